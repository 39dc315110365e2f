/*
 * Host-test stand-in for DeepStream's sources/includes/nvdsinfer_custom_impl.h (+ nvdsinfer.h):
 * only the declarations a bbox parser uses, transcribed from NVIDIA's documented API
 * (DeepStream SDK API Reference 6.x/7.x: NvDsInferDims, NvDsInferDataType, NvDsInferLayerInfo,
 * NvDsInferNetworkInfo, NvDsInferObjectDetectionInfo, NvDsInferParseDetectionParams,
 * NvDsInferParseCustomFunc, CHECK_CUSTOM_PARSE_FUNC_PROTOTYPE). Field order and types follow the
 * documentation so the parser compiles unchanged against the real header on the device.
 * It is not the real header and is used only by tests/test_deepstream.py.
 */
#ifndef YOLO_EDGE_TEST_NVDSINFER_CUSTOM_IMPL_H
#define YOLO_EDGE_TEST_NVDSINFER_CUSTOM_IMPL_H

#include <string>
#include <vector>

#define NVDSINFER_MAX_DIMS 8

typedef struct {
    unsigned int numDims;
    unsigned int d[NVDSINFER_MAX_DIMS];
    unsigned int numElements;
} NvDsInferDims;

typedef enum { FLOAT = 0, HALF = 1, INT8 = 2, INT32 = 3 } NvDsInferDataType;

typedef struct {
    NvDsInferDataType dataType;
    union {
        NvDsInferDims inferDims;
        NvDsInferDims dims;
    };
    int bindingIndex;
    const char *layerName;
    void *buffer;
    int isInput;
} NvDsInferLayerInfo;

typedef struct {
    unsigned int width;
    unsigned int height;
    unsigned int channels;
} NvDsInferNetworkInfo;

typedef struct {
    unsigned int classId;
    float left;
    float top;
    float width;
    float height;
    float detectionConfidence;
} NvDsInferObjectDetectionInfo;

typedef NvDsInferObjectDetectionInfo NvDsInferParseObjectInfo;

typedef struct _NvDsInferParseDetectionParams {
    unsigned int numClassesConfigured;
    union {
        std::vector<float> perClassThreshold;
        std::vector<float> perClassPreclusterThreshold;
    };
    std::vector<float> perClassPostclusterThreshold;
    _NvDsInferParseDetectionParams() : perClassThreshold() {}
    ~_NvDsInferParseDetectionParams() { perClassThreshold.~vector(); }
} NvDsInferParseDetectionParams;

typedef bool (*NvDsInferParseCustomFunc)(std::vector<NvDsInferLayerInfo> const &outputLayersInfo,
                                         NvDsInferNetworkInfo const &networkInfo,
                                         NvDsInferParseDetectionParams const &detectionParams,
                                         std::vector<NvDsInferObjectDetectionInfo> &objectList);

#define CHECK_CUSTOM_PARSE_FUNC_PROTOTYPE(customParseFunc)                                                 \
    static void checkFunc_##customParseFunc(NvDsInferParseCustomFunc func = customParseFunc) {            \
        checkFunc_##customParseFunc();                                                                    \
    };                                                                                                    \
    extern "C" bool customParseFunc(std::vector<NvDsInferLayerInfo> const &outputLayersInfo,              \
                                    NvDsInferNetworkInfo const &networkInfo,                              \
                                    NvDsInferParseDetectionParams const &detectionParams,                 \
                                    std::vector<NvDsInferObjectDetectionInfo> &objectList);

#endif
