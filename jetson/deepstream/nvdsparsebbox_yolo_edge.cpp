/*
 * DeepStream nvinfer bbox parser for yolo-edge models with NMS embedded (DESIGN §2):
 *
 *   num_dets    INT32 [B, 1]      detections kept per image
 *   det_boxes   FLOAT [B, K, 4]   x1, y1, x2, y2 in letterboxed network-input pixels
 *   det_scores  FLOAT [B, K]
 *   det_classes INT32 [B, K]
 *   rows past num_dets are padding.
 *
 * nvinfer calls the parser once per frame with each layer's buffer pointing at that frame and
 * inferDims without the batch axis (nvdsinfer.h: NvDsInferLayerInfo). Layers are found by name,
 * so the order of output-blob-names does not matter. Boxes are clipped to the network input and
 * returned as left/top/width/height; nvinfer maps them back through its own letterbox
 * (maintain-aspect-ratio=1, symmetric-padding=1). NMS is done: use cluster-mode=4.
 *
 * Config:  parse-bbox-func-name=NvDsInferParseYoloEdge
 *          custom-lib-path=nvdsinfer_yolo_edge/libnvdsinfer_yolo_edge.so
 * Build:   make   (on the device, against DeepStream's sources/includes)
 */

#include <algorithm>
#include <cstring>
#include <iostream>
#include <vector>

#include "nvdsinfer_custom_impl.h"

namespace {

const NvDsInferLayerInfo *findLayer(std::vector<NvDsInferLayerInfo> const &layers, const char *name) {
    for (auto const &layer : layers) {
        if (layer.layerName && std::strcmp(layer.layerName, name) == 0) return &layer;
    }
    return nullptr;
}

bool checkLayer(const NvDsInferLayerInfo *layer, const char *name, NvDsInferDataType type, const char *typeName,
                unsigned int numDims) {
    if (!layer) {
        std::cerr << "yolo-edge parser: output '" << name
                  << "' not found; set output-blob-names=num_dets;det_boxes;det_scores;det_classes" << std::endl;
        return false;
    }
    if (layer->dataType != type) {
        std::cerr << "yolo-edge parser: output '" << name << "' must be " << typeName
                  << " (yolo-edge export writes it so); got data type " << layer->dataType << std::endl;
        return false;
    }
    if (layer->inferDims.numDims != numDims) {
        std::cerr << "yolo-edge parser: output '" << name << "' must have " << numDims
                  << " dims without the batch axis, got " << layer->inferDims.numDims << std::endl;
        return false;
    }
    return true;
}

inline float clip(float v, float lo, float hi) { return std::max(lo, std::min(v, hi)); }

}  // namespace

extern "C" bool NvDsInferParseYoloEdge(std::vector<NvDsInferLayerInfo> const &outputLayersInfo,
                                       NvDsInferNetworkInfo const &networkInfo,
                                       NvDsInferParseDetectionParams const &detectionParams,
                                       std::vector<NvDsInferObjectDetectionInfo> &objectList) {
    const NvDsInferLayerInfo *num = findLayer(outputLayersInfo, "num_dets");
    const NvDsInferLayerInfo *boxes = findLayer(outputLayersInfo, "det_boxes");
    const NvDsInferLayerInfo *scores = findLayer(outputLayersInfo, "det_scores");
    const NvDsInferLayerInfo *classes = findLayer(outputLayersInfo, "det_classes");
    if (!checkLayer(num, "num_dets", INT32, "INT32", 1) || !checkLayer(boxes, "det_boxes", FLOAT, "FLOAT", 2) ||
        !checkLayer(scores, "det_scores", FLOAT, "FLOAT", 1) || !checkLayer(classes, "det_classes", INT32, "INT32", 1))
        return false;
    const unsigned int k = scores->inferDims.d[0];
    if (boxes->inferDims.d[0] != k || boxes->inferDims.d[1] != 4 || classes->inferDims.d[0] != k) {
        std::cerr << "yolo-edge parser: det_boxes must be [K, 4] and det_classes [K] with K = " << k << std::endl;
        return false;
    }
    const int n = std::max(0, std::min(static_cast<const int *>(num->buffer)[0], static_cast<int>(k)));
    const float *b = static_cast<const float *>(boxes->buffer);
    const float *s = static_cast<const float *>(scores->buffer);
    const int *c = static_cast<const int *>(classes->buffer);
    const float w = static_cast<float>(networkInfo.width), h = static_cast<float>(networkInfo.height);
    const auto &thresholds = detectionParams.perClassPreclusterThreshold;

    for (int i = 0; i < n; ++i) {
        const int cls = c[i];
        if (cls < 0 || static_cast<unsigned int>(cls) >= detectionParams.numClassesConfigured) continue;
        if (static_cast<size_t>(cls) < thresholds.size() && s[i] < thresholds[cls]) continue;
        const float x1 = clip(b[4 * i + 0], 0.f, w), y1 = clip(b[4 * i + 1], 0.f, h);
        const float x2 = clip(b[4 * i + 2], 0.f, w), y2 = clip(b[4 * i + 3], 0.f, h);
        if (x2 <= x1 || y2 <= y1) continue;
        NvDsInferObjectDetectionInfo obj;
        obj.classId = static_cast<unsigned int>(cls);
        obj.detectionConfidence = s[i];
        obj.left = x1;
        obj.top = y1;
        obj.width = x2 - x1;
        obj.height = y2 - y1;
        objectList.push_back(obj);
    }
    return true;
}

/* Compile-time check of the prototype nvinfer expects (nvdsinfer_custom_impl.h). */
CHECK_CUSTOM_PARSE_FUNC_PROTOTYPE(NvDsInferParseYoloEdge);
