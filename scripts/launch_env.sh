# Runtime settings shared by the multi-device launch scripts (source it; every value can be
# overridden from the environment). Ascend settings have no effect on GPUs and vice versa.
export PYTORCH_NPU_ALLOC_CONF=${PYTORCH_NPU_ALLOC_CONF:-expandable_segments:True}   # fewer fragmented segments
export TASK_QUEUE_ENABLE=${TASK_QUEUE_ENABLE:-2}                                     # NPU host-side task queue
export CPU_AFFINITY_CONF=${CPU_AFFINITY_CONF:-1}                                     # bind ranks to CPU cores
export MULTI_STREAM_MEMORY_REUSE=${MULTI_STREAM_MEMORY_REUSE:-2}                    # NPU: reuse memory across streams sooner
export HCCL_CONNECT_TIMEOUT=${HCCL_CONNECT_TIMEOUT:-1800}
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}
