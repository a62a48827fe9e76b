"""Standard TFLite Metadata (the ``TFLITE_METADATA`` flatbuffer + associated files), written by MediaPipe's
maintained metadata writers, so MediaPipe Tasks, the TFLite Task Library and Android Studio's ML binding take
our .tflite unmodified.

- classifiers: what MediaPipe's image-classifier writer writes (image input with normalisation, classification
  output with the class names as a ``TENSOR_AXIS_LABELS`` file), through its generic writer so that the label
  file is UTF-8 whatever the locale;
- other image-input models (anomaly, landmarks): the generic writer with the image input (properties and
  normalisation) and feature outputs;
- RAW-input models (isp) take a packed Bayer tensor, not an image: feature input and outputs.

Our own JSON entry stays the complete description; this is what other consumers read.

MediaPipe >= 0.10.30 wheels ship the writers but not the compiled helper they import to stamp the minimum
parser version (``mediapipe.tasks.cc.metadata.python._pywrap_metadata_version``). Where it is missing,
:func:`_install_parser_version` registers a Python equivalent: the version is the newest schema feature the
metadata uses, by the rules of MediaPipe's ``metadata_version.cc`` (features after 1.0.0 and the version
that added them). No other writer is written here.
"""
from __future__ import annotations

import importlib
import os
import sys
import types
from typing import Any

import numpy as np

from mobilevision.errors import ExportError
from mobilevision.tasks import classifier_output

_VERSION_MODULE = "mediapipe.tasks.cc.metadata.python._pywrap_metadata_version"


def _minimum_parser_version(buffer: bytes) -> str:
    """The oldest metadata parser that reads ``buffer`` (a ModelMetadata flatbuffer): 1.0.0 raised to the version
    that introduced each schema feature present (MediaPipe's metadata_version.cc rules)."""
    from mediapipe.tasks.metadata import metadata_schema_py_generated as fb

    found = [(1, 0, 0)]
    md = fb.ModelMetadataT.InitFromObj(fb.ModelMetadata.GetRootAsModelMetadata(bytearray(buffer), 0))
    units = fb.ProcessUnitOptions
    unit_versions = {units.BertTokenizerOptions: (1, 1, 0), units.SentencePieceTokenizerOptions: (1, 1, 0),
                     units.RegexTokenizerOptions: (1, 2, 1)}

    def files(items):
        for f in items or []:
            if f.type == fb.AssociatedFileType.VOCABULARY:
                found.append((1, 0, 1))
            if f.type == getattr(fb.AssociatedFileType, "SCANN_INDEX_FILE", -1):
                found.append((1, 4, 0))
            if f.version is not None:
                found.append((1, 4, 1))

    def process_units(items):
        for u in items or []:
            if u.optionsType in unit_versions:
                found.append(unit_versions[u.optionsType])

    for graph in md.subgraphMetadata or []:
        for tensor in [*(graph.inputTensorMetadata or []), *(graph.outputTensorMetadata or [])]:
            files(tensor.associatedFiles)
            process_units(tensor.processUnits)
            if tensor.content is not None and tensor.content.contentPropertiesType == \
                    fb.ContentProperties.AudioProperties:
                found.append((1, 3, 0))
        files(graph.associatedFiles)
        for units_field in (graph.inputProcessUnits, graph.outputProcessUnits):
            if units_field is not None:
                found.append((1, 1, 0))
                process_units(units_field)
        if graph.inputTensorGroups is not None or graph.outputTensorGroups is not None:
            found.append((1, 2, 0))
        if graph.customMetadata is not None:
            found.append((1, 5, 0))
    files(md.associatedFiles)
    return ".".join(map(str, max(found)))


def _install_parser_version() -> None:
    """Register the parser-version helper where the MediaPipe wheel lacks its compiled one (see module doc)."""
    try:
        importlib.import_module(_VERSION_MODULE)
        return
    except ImportError:
        pass
    parts = _VERSION_MODULE.split(".")
    for i in range(3, len(parts)):   # mediapipe.tasks.cc ... : the packages the wheel left out, empty
        name = ".".join(parts[:i])
        try:
            importlib.import_module(name)
        except ImportError:
            package = sys.modules[name] = types.ModuleType(name)
            package.__path__ = []
            setattr(sys.modules[".".join(parts[:i - 1])], parts[i - 1], package)
    module = types.ModuleType(_VERSION_MODULE)
    module.GetMinimumMetadataParserVersion = _minimum_parser_version
    sys.modules[_VERSION_MODULE] = module
    setattr(sys.modules[".".join(parts[:-1])], parts[-1], module)


def label_names(md: Any) -> list[str]:
    """One name per class of the classifier's output, as MediaPipe's label file holds them (a line each): the
    metadata's labels, the class index where a name is missing or empty (MediaPipe drops a trailing empty line
    and reports an empty one as no name)."""
    n = int(np.prod(md.outputs[0].shape[1:]))
    names = list(md.labels or [])[:n]
    names += [""] * (n - len(names))
    return [name if name.strip() else str(i) for i, name in enumerate(names)]


def _utf8_writer(mw: Any, model: bytearray) -> Any:
    """MediaPipe's generic MetadataWriter, its label files written as UTF-8 (MediaPipe opens them with the
    locale's encoding: cp1252 on Windows mangles or refuses non-ASCII names its C++ side reads as UTF-8)."""

    class Writer(mw.MetadataWriter):
        def _export_labels(self, filename: str, index_to_label: list[str]) -> str:
            path = os.path.join(self._temp_folder.name, filename)
            with open(path, "w", encoding="utf-8", newline="\n") as f:
                f.write("\n".join(index_to_label))
            self._associated_files.append(path)   # as the method it replaces: packed into the .tflite
            return path

    return Writer(model)


def writers() -> Any:
    """MediaPipe's ``metadata_writers`` package, or ImportError (mediapipe not installed)."""
    _install_parser_version()
    return importlib.import_module("mediapipe.tasks.python.metadata.metadata_writers.metadata_writer")


def with_standard_metadata(flatbuffer: bytes, md: Any) -> bytes:
    """``flatbuffer`` with TFLite Metadata describing ``md`` (our ModelMetadata of this artifact).

    Keeps every other metadata entry (our JSON). The label file goes into the zip MediaPipe appends."""
    mw = writers()
    model = bytearray(flatbuffer)
    pre = md.preprocessing
    title = f"{md.model} ({md.task}), exported by mobilevision"
    try:
        if classifier_output(md.task) and pre is not None:
            # what MediaPipe's image-classifier writer does (image input, classification output with labels),
            # through the generic writer so that the label file is UTF-8
            writer = _utf8_writer(mw, model).add_general_info(md.model, title)
            writer.add_image_input(pixel_mean(pre), pixel_std(pre))
            writer.add_classification_output(mw.Labels().add(label_names(md)))
            for spec in md.outputs[1:]:   # a second head (auxiliary outputs): described, not classified
                writer.add_feature_output(spec.name, f"{md.task} output {spec.name}")
        else:
            writer = _utf8_writer(mw, model).add_general_info(md.model, title)
            if pre is not None:
                writer.add_image_input(pixel_mean(pre), pixel_std(pre))
            else:
                for spec in md.inputs:
                    writer.add_feature_input(spec.name, "packed Bayer RAW: see the mobilevision metadata entry")
            for spec in md.outputs:
                writer.add_feature_output(spec.name, f"{md.task} output {spec.name}")
        content, _ = writer.populate()
        del writer   # its temporary label folder goes now, not at interpreter exit (where cleanup fails noisily)
    except ExportError:
        raise
    except Exception as e:  # the writers raise ValueError / RuntimeError on a model they do not fit
        raise ExportError(f"MediaPipe's metadata writer refused {md.model}: {str(e).strip().splitlines()[0][:200]}") from e
    return bytes(content)


def _one_or_three(values: list[float]) -> list[float]:
    """One value for all channels where they agree (MediaPipe Tasks take no per-channel normalisation)."""
    return values[:1] if len(set(values)) == 1 else values


def pixel_mean(pre) -> list[float]:
    """The mean in TFLite Metadata's terms: (pixel - mean) / std on 0..255 pixels, ours is (pixel * scale - mean) / std."""
    return _one_or_three([m / pre.scale for m in pre.mean])


def pixel_std(pre) -> list[float]:
    return _one_or_three([s / pre.scale for s in pre.std])
