// The mobilevision Kotlin runtime as an Android library: the plain-Kotlin core
// (dev.mobilevision.runtime) plus the LiteRT and ExecuTorch bindings (dev.mobilevision.runtime.android).
// Built as the ":runtime" project of android_demo/ (versions in android_demo/gradle/libs.versions.toml).
// Without Gradle, CI compiles and tests the core alone with tools/jvm_test.sh.
import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    alias(libs.plugins.android.library)
    alias(libs.plugins.kotlin.android)
}

android {
    namespace = "dev.mobilevision.runtime"
    compileSdk = 36

    defaultConfig {
        minSdk = 26
    }

    sourceSets {
        getByName("main").java.srcDirs("src/main/kotlin")
        getByName("test").java.srcDirs("src/test/kotlin")
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
}

kotlin {
    compilerOptions {
        jvmTarget.set(JvmTarget.JVM_17)
    }
}

dependencies {
    implementation(libs.litert.runtime)
    implementation(libs.litert.gpu)
    implementation(libs.executorch.android)   // ExecuTorchRunner (.pte); XNNPACK flavour, arm64-v8a and x86_64
    testImplementation(libs.junit)
}

// The golden-vector tests read the folder `python -m mobilevision.runtime.golden ... --out DIR` wrote:
// ./gradlew :runtime:testDebugUnitTest -Pmobilevision.golden=DIR (or MOBILEVISION_GOLDEN=DIR); a relative
// DIR is taken from android_demo/, the root of the build.
val golden = providers.gradleProperty("mobilevision.golden")
    .orElse(providers.environmentVariable("MOBILEVISION_GOLDEN"))

tasks.withType<Test>().configureEach {
    golden.orNull?.let { systemProperty("mobilevision.golden", rootProject.file(it).absolutePath) }
}
