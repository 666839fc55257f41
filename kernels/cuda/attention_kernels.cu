// The attention kernels' translation unit: the decode kernel (attention_decode.cuh) and the
// prefill kernel (attention_prefill.cuh), compiled together so that each compiles to the code it
// did when both lived in one attention.cu (checked on the PTX: the prefill kernel alone unrolls
// its loops differently). Planning, validation and dispatch: attention.cpp; kv_append:
// kv_append.cu.
#include "attention_decode.cuh"
#include "attention_prefill.cuh"
