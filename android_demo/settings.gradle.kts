pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}

rootProject.name = "mobilevision-demo"

include(":app")
// The runtime library lives with the rest of the runtime; CI builds its plain-Kotlin core without Gradle.
include(":runtime")
project(":runtime").projectDir = file("../runtime/android")
