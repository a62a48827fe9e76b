// mobilevision's web runtime: exported ONNX models on onnxruntime-web and .tflite models on LiteRT.js, with their
// embedded metadata and the same preprocessing and post-processing as the Python and Kotlin runtimes (Pillow-exact).
export { MobileVisionError, ArtifactError, InputError } from "./errors.js";
export { parseMetadata, SCHEMA_VERSION } from "./metadata.js";
export { readOnnxMetadata } from "./onnx_metadata.js";
export { readTfliteMetadata, isTflite } from "./tflite_metadata.js";
export { RgbImage, FloatImage, toRgbImage, toImageData } from "./image.js";
export { topK, softmax } from "./classify.js";
export { heatmap, overlay, AnomalyResult } from "./anomaly.js";
export { fullBox, cropImage } from "./landmarks.js";
export { packBayer, cropEven, normalizeRaw, toUint8 } from "./isp.js";
export { latencyStats } from "./stats.js";
export { Model, load } from "./model.js";
export * as resample from "./resample.js";
export * as preprocess from "./preprocess.js";
