// Runs the CPU kernels on a directory of test vectors and writes their outputs as raw files.
// Built from this one source for x86_64 and for aarch64 (tools/jetson_check/ compares the
// two), so it uses only the public core API and the standard library.
//
//   edgeseg_kernel_vectors VECTOR_DIR OUT_DIR [THREADS]
//
// VECTOR_DIR/manifest.txt holds one case per line: a kind (`pre` or `post`) followed by
// space-separated key=value tokens; `#` starts a comment line. Floats are written in C99
// hex notation (exact). Input buffers are raw little-endian files named by the tokens.
//
//   pre  name= input= h= w= c= rowStride= pixelStride= outH= outW= outC= dtype=f32|f16
//        letterbox=0|1 swapRB=0|1 pad= mean=m0,m1,m2 std=s0,s1,s2
//   post name= logits= dtype=f32|f16 C= h= w= outH= outW= alpha= palette=FILE|-
//        transparent=FILE|- (256 bytes) frame=FILE|- frameRowStride= framePixelStride=
//        letterbox=srcW,srcH,inW,inH|- confidence=0|1 counts=0|1
//
// Outputs, in OUT_DIR: NAME.status ("ok" or "error: <message>"), and for `pre` NAME.tensor
// (outC x outH x outW of dtype) and NAME.letterbox (the returned placement as text); for
// `post` NAME.classmap (u8), NAME.confidence (f32), NAME.overlay (u8 HxWx3), NAME.counts
// (i64), each only when requested.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "edgeseg/build_info.h"
#include "edgeseg/image.h"
#include "edgeseg/parallel.h"
#include "edgeseg/postprocess.h"
#include "edgeseg/preprocess.h"

namespace {

using Fields = std::map<std::string, std::string>;

std::vector<uint8_t> readFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw std::runtime_error("cannot open " + path);
    }
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

void writeFile(const std::string& path, const void* data, size_t bytes) {
    std::ofstream out(path, std::ios::binary);
    out.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
    if (!out) {
        throw std::runtime_error("cannot write " + path);
    }
}

const std::string& field(const Fields& f, const std::string& key) {
    auto it = f.find(key);
    if (it == f.end()) {
        throw std::runtime_error("manifest: missing key '" + key + "'");
    }
    return it->second;
}

long intField(const Fields& f, const std::string& key) {
    return std::strtol(field(f, key).c_str(), nullptr, 10);
}

float floatOf(const std::string& text) { return std::strtof(text.c_str(), nullptr); }

std::vector<std::string> split(const std::string& text, char sep) {
    std::vector<std::string> parts;
    std::stringstream in(text);
    std::string item;
    while (std::getline(in, item, sep)) {
        parts.push_back(item);
    }
    return parts;
}

edgeseg::DType dtypeOf(const std::string& text) {
    if (text == "f32") {
        return edgeseg::DType::Float32;
    }
    if (text == "f16") {
        return edgeseg::DType::Float16;
    }
    throw std::runtime_error("manifest: dtype must be f32 or f16, got " + text);
}

size_t dtypeSize(edgeseg::DType dtype) { return dtype == edgeseg::DType::Float32 ? 4 : 2; }

void runPre(const Fields& f, const std::string& vecDir, const std::string& outPrefix) {
    std::vector<uint8_t> input = readFile(vecDir + "/" + field(f, "input"));
    edgeseg::ImageView src;
    src.data = input.data();
    src.height = static_cast<int>(intField(f, "h"));
    src.width = static_cast<int>(intField(f, "w"));
    src.channels = static_cast<int>(intField(f, "c"));
    src.rowStride = intField(f, "rowStride");
    src.pixelStride = intField(f, "pixelStride");

    edgeseg::PreprocessParams p;
    p.outHeight = static_cast<int>(intField(f, "outH"));
    p.outWidth = static_cast<int>(intField(f, "outW"));
    p.outChannels = static_cast<int>(intField(f, "outC"));
    p.dtype = dtypeOf(field(f, "dtype"));
    p.letterbox = intField(f, "letterbox") != 0;
    p.swapRB = intField(f, "swapRB") != 0;
    p.padValue = static_cast<uint8_t>(intField(f, "pad"));
    std::vector<std::string> mean = split(field(f, "mean"), ',');
    std::vector<std::string> stddev = split(field(f, "std"), ',');
    for (size_t i = 0; i < 3 && i < mean.size() && i < stddev.size(); ++i) {
        p.mean[i] = floatOf(mean[i]);
        p.stddev[i] = floatOf(stddev[i]);
    }

    std::vector<uint8_t> dst(static_cast<size_t>(p.outChannels) * p.outHeight * p.outWidth *
                             dtypeSize(p.dtype));
    edgeseg::Letterbox lb = edgeseg::preprocess(src, p, dst.data());
    writeFile(outPrefix + ".tensor", dst.data(), dst.size());
    std::ostringstream text;
    text << lb.srcWidth << ' ' << lb.srcHeight << ' ' << lb.inputWidth << ' ' << lb.inputHeight
         << ' ' << lb.resizedWidth << ' ' << lb.resizedHeight << ' ' << lb.padX << ' ' << lb.padY
         << '\n';
    std::string s = text.str();
    writeFile(outPrefix + ".letterbox", s.data(), s.size());
}

void runPost(const Fields& f, const std::string& vecDir, const std::string& outPrefix) {
    std::vector<uint8_t> logitsData = readFile(vecDir + "/" + field(f, "logits"));
    edgeseg::LogitsView logits;
    logits.data = logitsData.data();
    logits.dtype = dtypeOf(field(f, "dtype"));
    logits.channels = static_cast<int>(intField(f, "C"));
    logits.height = static_cast<int>(intField(f, "h"));
    logits.width = static_cast<int>(intField(f, "w"));

    edgeseg::PostprocessParams p;
    p.outHeight = static_cast<int>(intField(f, "outH"));
    p.outWidth = static_cast<int>(intField(f, "outW"));
    p.alpha = floatOf(field(f, "alpha"));

    std::vector<uint8_t> palette;
    std::vector<uint8_t> transparent;
    std::vector<uint8_t> frameData;
    edgeseg::ImageView frame;
    edgeseg::Letterbox lb;
    if (field(f, "palette") != "-") {
        palette = readFile(vecDir + "/" + field(f, "palette"));
        p.palette = palette.data();
    }
    if (field(f, "transparent") != "-") {
        transparent = readFile(vecDir + "/" + field(f, "transparent"));
        p.transparent = transparent.data();
    }
    if (field(f, "letterbox") != "-") {
        std::vector<std::string> v = split(field(f, "letterbox"), ',');
        if (v.size() != 4) {
            throw std::runtime_error("manifest: letterbox needs srcW,srcH,inW,inH");
        }
        lb = edgeseg::makeLetterbox(std::stoi(v[0]), std::stoi(v[1]), std::stoi(v[2]),
                                    std::stoi(v[3]));
        p.letterbox = &lb;
    }

    const size_t pixels = static_cast<size_t>(p.outHeight) * p.outWidth;
    std::vector<uint8_t> classMap(pixels);
    std::vector<float> confidence;
    std::vector<uint8_t> overlay;
    std::vector<int64_t> counts;
    edgeseg::PostprocessOutputs out;
    out.classMap = classMap.data();
    if (intField(f, "confidence") != 0) {
        confidence.resize(pixels);
        out.confidence = confidence.data();
    }
    if (field(f, "frame") != "-") {
        frameData = readFile(vecDir + "/" + field(f, "frame"));
        frame.data = frameData.data();
        frame.height = p.outHeight;
        frame.width = p.outWidth;
        frame.channels = 3;
        frame.rowStride = intField(f, "frameRowStride");
        frame.pixelStride = intField(f, "framePixelStride");
        out.frame = &frame;
        overlay.resize(pixels * 3);
        out.overlay = overlay.data();
    }
    if (intField(f, "counts") != 0) {
        counts.assign(static_cast<size_t>(logits.channels), -1);
        out.counts = counts.data();
    }

    edgeseg::postprocess(logits, p, out);
    writeFile(outPrefix + ".classmap", classMap.data(), classMap.size());
    if (!confidence.empty()) {
        writeFile(outPrefix + ".confidence", confidence.data(), confidence.size() * 4);
    }
    if (!overlay.empty()) {
        writeFile(outPrefix + ".overlay", overlay.data(), overlay.size());
    }
    if (!counts.empty()) {
        writeFile(outPrefix + ".counts", counts.data(), counts.size() * 8);
    }
}

} // namespace

int main(int argc, char** argv) {
    if (argc < 3 || argc > 4) {
        std::cerr << "usage: " << argv[0] << " VECTOR_DIR OUT_DIR [THREADS]\n";
        return 2;
    }
    const std::string vecDir = argv[1];
    const std::string outDir = argv[2];
    // More than one thread even under qemu, so the pool's chunking is part of what is compared.
    edgeseg::setNumThreads(argc == 4 ? std::atoi(argv[3]) : 2);
    edgeseg::BuildInfo info = edgeseg::buildInfo();
    std::cout << "edgeseg " << info.version << ", simd " << info.simd << ", threads "
              << info.threads << ", " << info.compiler << '\n';

    std::ifstream manifest(vecDir + "/manifest.txt");
    if (!manifest) {
        std::cerr << "cannot open " << vecDir << "/manifest.txt\n";
        return 2;
    }
    int cases = 0;
    int errors = 0;
    std::string line;
    while (std::getline(manifest, line)) {
        if (line.empty() || line[0] == '#') {
            continue;
        }
        std::istringstream tokens(line);
        std::string kind;
        tokens >> kind;
        Fields f;
        std::string token;
        while (tokens >> token) {
            size_t eq = token.find('=');
            if (eq != std::string::npos) {
                f[token.substr(0, eq)] = token.substr(eq + 1);
            }
        }
        const std::string name = field(f, "name");
        const std::string outPrefix = outDir + "/" + name;
        std::string status = "ok";
        // A kernel error is an outcome to compare between the two builds, not a crash here.
        try {
            if (kind == "pre") {
                runPre(f, vecDir, outPrefix);
            } else if (kind == "post") {
                runPost(f, vecDir, outPrefix);
            } else {
                throw std::runtime_error("manifest: unknown kind '" + kind + "'");
            }
        } catch (const std::exception& e) {
            status = std::string("error: ") + e.what();
            ++errors;
        }
        status += '\n';
        writeFile(outPrefix + ".status", status.data(), status.size());
        ++cases;
    }
    std::cout << cases << " cases run, " << errors << " raised\n";
    return 0;
}
