// iklogits.cpp — logits after each token, fed one at a time, from ik_llama.cpp (a reference
// only, outside Woolly's tree): iklogits MODEL FMOE OUT TOKEN...
#include "llama.h"
#include <cstdio>
#include <cstdlib>
#include <vector>
int main(int argc, char** argv) {
    llama_backend_init();
    auto mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    llama_model* model = llama_model_load_from_file(argv[1], mp);
    auto cp = llama_context_default_params();
    cp.n_ctx = 512;
    cp.n_batch = 512;
    cp.n_ubatch = 512;
    cp.n_threads = 1;
    cp.n_threads_batch = 1;
    cp.flash_attn = false;
    cp.fused_moe_up_gate = atoi(argv[2]) != 0;
    cp.type_k = GGML_TYPE_F16;
    cp.type_v = GGML_TYPE_F16;
    llama_context* ctx = llama_init_from_model(model, cp);
    const int n_vocab = llama_n_vocab(model);
    FILE* out = fopen(argv[3], "wb");
    if (getenv("IK_BATCH")) { // the whole prompt in one batch, every row's logits
        const int n = argc - 4;
        llama_batch b = llama_batch_init(n, 0, 1);
        for (int i = 0; i < n; ++i) {
            b.token[i] = atoi(argv[4 + i]);
            b.pos[i] = i;
            b.n_seq_id[i] = 1;
            b.seq_id[i][0] = 0;
            b.logits[i] = 1;
        }
        b.n_tokens = n;
        if (llama_decode(ctx, b)) {
            fprintf(stderr, "decode failed\n");
            return 1;
        }
        for (int i = 0; i < n; ++i)
            fwrite(llama_get_logits_ith(ctx, i), sizeof(float), n_vocab, out);
        fclose(out);
        return 0;
    }
    for (int i = 4; i < argc; ++i) {
        llama_token t = atoi(argv[i]);
        llama_batch b = llama_batch_get_one(&t, 1, i - 4, 0);
        if (llama_decode(ctx, b)) {
            fprintf(stderr, "decode failed\n");
            return 1;
        }
        fwrite(llama_get_logits_ith(ctx, -1), sizeof(float), n_vocab, out);
    }
    fclose(out);
    return 0;
}
