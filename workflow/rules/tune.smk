# Tune: the cost model's predicted-best cuda-engine options for each network on this machine's
# GPU model (spdnn model tune), cached per GPU model. Without a GPU the GPU name is empty and
# spdnn.model picks its documented default preset (h100-sxm, spdnn/model/hardware.json).


from spdnn.model.hardware import gpu_slug
from spdnn.model.tune import detect_gpu

# the first GPU's name from nvidia-smi ('' without one, or with engine cpu: no tuning then)
GPU_NAME = (detect_gpu() or "") if ENGINE != "cpu" else ""
GPU_SLUG = gpu_slug(GPU_NAME or None)


rule tune:
    output:
        f"{OUT}/tuned/neuron{{N}}-l{{L}}.{{gpu_slug}}.json",
    params:
        # without a GPU the model's documented default preset is used (no --gpu)
        gpu=["--gpu", GPU_NAME] if GPU_NAME else [],  # a list: `:q` quotes each
        inputs=config["inputs"],
    conda:
        ENV
    log:
        f"{OUT}/logs/tune-neuron{{N}}-l{{L}}.{{gpu_slug}}.log",
    shell:
        "python -m spdnn model tune --neurons {wildcards.N:q} --layers {wildcards.L:q} --inputs {params.inputs:q}"
        " {params.gpu:q} --output {output:q} 2> {log:q}"
