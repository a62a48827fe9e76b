// Types of mobilevision's web runtime (src/index.js). Metadata fields keep the JSON's snake_case names.

export class MobileVisionError extends Error {
  constructor(message: string, options?: { cause?: unknown });
}
/** The artifact or its metadata cannot be used (missing, malformed, newer schema, not ONNX). */
export class ArtifactError extends MobileVisionError {}
/** The caller's input does not fit (not an image, wrong sizes, wrong task method, bad options). */
export class InputError extends MobileVisionError {}

export const SCHEMA_VERSION: number;

export interface TensorSpec { name: string; shape: number[]; dtype: string; layout: string }
export interface Preprocessing {
  resize: number; crop: number[]; interpolation: string; scale: number; mean: number[]; std: number[];
  color: string; layout: string; resize_mode: string; normalization: string;
}
export interface RawInput { black_level: number[]; white_level: number; clip: boolean; packing: string[] }
export interface LandmarkOutput { points: number; coordinates: string; flip_pairs: number[][]; eye_corners: number[] | null }
export interface AnomalyThresholds {
  image: number; pixel: number | null; image_f1: number | null; pixel_f1: number | null; source: string;
}
export interface Metadata {
  task: string; model: string; target: string; precision: string;
  inputs: TensorSpec[]; outputs: TensorSpec[]; preprocessing: Preprocessing | null;
  labels: string[] | null; label_set: string | null; num_classes: number | null;
  params: number | null; macs: number | null; weights: string | null; weights_sha256: string | null;
  tools: Record<string, string>; parity: Record<string, any> | null; raw: RawInput | null;
  landmarks: LandmarkOutput | null; quantization: Record<string, any> | null; scores: string | null;
  anomaly: AnomalyThresholds | null; created: string; schema_version: number;
}

/** Validated metadata from untrusted JSON text (ArtifactError naming the first bad field). */
export function parseMetadata(text: string): Metadata;
/** The "mobilevision" entry of an ONNX file's metadata_props, or null. */
export function readOnnxMetadata(bytes: ArrayBuffer | Uint8Array, name?: string): string | null;
/** The "mobilevision" entry of a .tflite file's Model.metadata, or null. */
export function readTfliteMetadata(bytes: ArrayBuffer | Uint8Array, name?: string): string | null;
/** True when the bytes carry the TFLite flatbuffer identifier. */
export function isTflite(bytes: Uint8Array): boolean;

export class RgbImage {
  constructor(width: number, height: number, data?: Uint8Array | Uint8ClampedArray);
  readonly width: number; readonly height: number; readonly data: Uint8Array;
}
export class FloatImage {
  constructor(width: number, height: number, data?: Float32Array);
  readonly width: number; readonly height: number; readonly data: Float32Array;
}
export type ImageLike = RgbImage | ImageData | { width: number; height: number; data: Uint8Array | Uint8ClampedArray }
  | HTMLImageElement | HTMLCanvasElement | HTMLVideoElement | ImageBitmap | OffscreenCanvas;
export function toRgbImage(image: ImageLike): RgbImage;
export function toImageData(rgb: RgbImage): ImageData | { width: number; height: number; data: Uint8ClampedArray };

export type Filter = "bicubic" | "bilinear" | "lanczos" | "box" | "hamming" | "nearest";
export type Box = ArrayLike<number>;
export namespace resample {
  const FILTER_NAMES: string[];
  function resize(src: RgbImage, width: number, height: number, filter: Filter | string, box?: Box | null): RgbImage;
  function resizeCrop(src: RgbImage, width: number, height: number, filter: Filter | string, left: number, top: number,
    cropW: number, cropH: number, box?: Box | null): RgbImage;
  function resizeFloat(src: FloatImage, width: number, height: number, filter: Filter | string, box?: Box | null): FloatImage;
}
export namespace preprocess {
  function resized(image: RgbImage, pre: Preprocessing): RgbImage;
  function normalize(image: RgbImage, pre: Preprocessing): Float32Array;
  function preprocess(image: RgbImage, pre: Preprocessing): Float32Array;
}

export interface Classification { index: number; label: string; score: number }
export function softmax(logits: ArrayLike<number>): Float64Array;
export function topK(logits: ArrayLike<number>, k: number, labels?: string[] | null, scores?: string | null): Classification[];

export function heatmap(map: FloatImage, lo?: number, hi?: number): RgbImage;
export function overlay(image: RgbImage, heat: RgbImage, alpha?: number): RgbImage;
export class AnomalyResult {
  readonly score: number;
  readonly map: FloatImage;
  /** the caller's threshold, else the artifact's F1-optimal one (metadata anomaly.image), else null */
  readonly threshold: number | null;
  /** the artifact's F1-optimal pixel threshold, if it carries one */
  readonly pixelThreshold: number | null;
  readonly isAnomalous: boolean | null;
  /** per pixel (row-major): map value > pixelThreshold; null without one */
  anomalousPixels(): Uint8Array | null;
  readonly image: RgbImage;
  heatmap(lo?: number, hi?: number): RgbImage;
  overlay(alpha?: number): RgbImage;
}

export function fullBox(width: number, height: number): [number, number, number, number];
export function cropImage(image: RgbImage, box: Box, width: number, height: number): RgbImage;

export type Mosaic = Uint16Array | Float32Array | ArrayLike<number>;
export function cropEven(mosaic: Mosaic, width: number, height: number): { mosaic: Mosaic; width: number; height: number };
export function packBayer(mosaic: Mosaic, width: number, height: number, pattern?: string): Float32Array;
export function normalizeRaw(packed: Float32Array, black: number | number[], white: number, clip?: boolean): Float32Array;
export function toUint8(rgb: Float32Array, width: number, height: number): RgbImage;

export interface LatencyStats {
  runs: number; median_ms: number; mean_ms: number; p90_ms: number; min_ms: number; max_ms: number; std_ms: number;
}
export function latencyStats(samplesMs: ArrayLike<number>): LatencyStats;

export interface Fallback { executionProvider: string; reason: string }
export interface Runner {
  inputNames: string[];
  outputNames: string[];
  run(inputs: Float32Array[]): Promise<Float32Array[]>;
  close(): void | Promise<void>;
  executionProvider?: string;
  fallbacks?: Fallback[];
}
export interface LoadOptions {
  /** tried in order; default ["wasm"] (a .tflite takes "wasm" or "webgpu") */
  executionProviders?: (string | { name: string })[];
  numThreads?: number;
  /** metadata JSON text or object, used when the file carries none */
  sidecar?: string | object;
  /** replaces onnxruntime-web (tests) */
  runner?: Runner;
  /** the onnxruntime-web module; default: import("onnxruntime-web") */
  ort?: any;
  /** the @litertjs/core module (for .tflite); default: import("@litertjs/core") */
  litert?: any;
  /** the folder of LiteRT.js's .wasm files; default: ../wasm/ beside the imported @litertjs/core */
  litertWasm?: string;
}
export interface RawResult { rgb: Float32Array; width: number; height: number; rgb8: RgbImage; tiles: number }

export class Model {
  constructor(metadata: Metadata | string, runner: Runner);
  readonly metadata: Metadata;
  readonly runner: Runner;
  readonly executionProvider: string;
  readonly fallbacks: Fallback[];
  predict(inputs: Float32Array[]): Promise<Record<string, Float32Array>>;
  classify(image: ImageLike, topK?: number): Promise<Classification[]>;
  detectAnomaly(image: ImageLike, options?: { threshold?: number | null }): Promise<AnomalyResult>;
  detectLandmarks(image: ImageLike, box?: Box | null): Promise<Float64Array>;
  processRaw(mosaic: Mosaic, width: number, height: number,
    options?: { pattern?: string; blackLevel?: number | number[] | null; whiteLevel?: number | null; clip?: boolean | null }): Promise<RawResult>;
  close(): Promise<void>;
}
export function load(source: string | URL | ArrayBuffer | Uint8Array, options?: LoadOptions): Promise<Model>;
