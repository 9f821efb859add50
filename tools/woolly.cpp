#include "engine/context.h"
#include "engine/error.h"
#include <cstdio>
#include <sstream>
int main(int argc, char** argv) {
    auto model = woolly::LlamaModel::load(argv[1]);
    woolly::LlamaContext ctx(*model);
    std::istringstream in(argv[2]);
    FILE* f = fopen(argv[3], "wb");
    int t;
    while (in >> t) { const float* l = ctx.decode(t); fwrite(l, 4, model->hparams().n_vocab, f); }
    fclose(f);
}
