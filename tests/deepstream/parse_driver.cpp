// Test driver: loads the parser library with dlopen (as nvinfer does, by the function name in the
// config), feeds it one frame of contract tensors read from a file, prints what it returns.
//
//   parse_driver LIB FUNC INPUT [normal|reversed|wrong-type|missing]
//
// INPUT (little-endian): int32 K, numClasses, netW, netH, nThr; float thr[nThr];
//                        int32 num; float boxes[4K]; float scores[K]; int32 classes[K]
// Output: "OK <n>" then "<class> <score> <left> <top> <width> <height>" per object, or "FAIL".
#include <dlfcn.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "nvdsinfer_custom_impl.h"

static NvDsInferLayerInfo layer(const char *name, NvDsInferDataType t, std::vector<unsigned> dims, void *buf) {
    NvDsInferLayerInfo l;
    std::memset(&l, 0, sizeof(l));
    l.dataType = t;
    l.inferDims.numDims = dims.size();
    l.inferDims.numElements = 1;
    for (size_t i = 0; i < dims.size(); ++i) {
        l.inferDims.d[i] = dims[i];
        l.inferDims.numElements *= dims[i];
    }
    l.layerName = name;
    l.buffer = buf;
    return l;
}

int main(int argc, char **argv) {
    if (argc < 4) return 2;
    std::string mode = argc > 4 ? argv[4] : "normal";
    std::ifstream in(argv[3], std::ios::binary);
    int hdr[5];
    in.read(reinterpret_cast<char *>(hdr), sizeof(hdr));
    const int k = hdr[0];
    std::vector<float> thr(hdr[4]), boxes(4 * k), scores(k);
    std::vector<int> classes(k);
    int num = 0;
    in.read(reinterpret_cast<char *>(thr.data()), thr.size() * sizeof(float));
    in.read(reinterpret_cast<char *>(&num), sizeof(int));
    in.read(reinterpret_cast<char *>(boxes.data()), boxes.size() * sizeof(float));
    in.read(reinterpret_cast<char *>(scores.data()), scores.size() * sizeof(float));
    in.read(reinterpret_cast<char *>(classes.data()), classes.size() * sizeof(int));
    if (!in) return 3;

    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) { std::cerr << dlerror() << std::endl; return 4; }
    auto fn = reinterpret_cast<NvDsInferParseCustomFunc>(dlsym(lib, argv[2]));
    if (!fn) { std::cerr << "no symbol " << argv[2] << std::endl; return 5; }

    std::vector<NvDsInferLayerInfo> layers = {
        layer("num_dets", INT32, {1}, &num),
        layer("det_boxes", FLOAT, {(unsigned)k, 4}, boxes.data()),
        layer("det_scores", FLOAT, {(unsigned)k}, scores.data()),
        layer("det_classes", mode == "wrong-type" ? FLOAT : INT32, {(unsigned)k}, classes.data()),
    };
    if (mode == "reversed") layers = {layers[3], layers[2], layers[1], layers[0]};
    if (mode == "missing") layers.pop_back();
    NvDsInferNetworkInfo net = {(unsigned)hdr[2], (unsigned)hdr[3], 3};
    NvDsInferParseDetectionParams params;
    params.numClassesConfigured = hdr[1];
    params.perClassPreclusterThreshold = thr;
    std::vector<NvDsInferObjectDetectionInfo> objects;
    if (!fn(layers, net, params, objects)) { std::cout << "FAIL" << std::endl; return 1; }
    std::cout << "OK " << objects.size() << std::endl;
    for (auto const &o : objects)
        std::printf("%u %.9g %.9g %.9g %.9g %.9g\n", o.classId, o.detectionConfidence, o.left, o.top, o.width,
                    o.height);
    return 0;
}
