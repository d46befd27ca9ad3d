# Tune (opt-in, config `tune: true`): the cost model's predicted-best cuda-engine options for
# each network on this machine's GPU model (spdnn model tune), cached per GPU model, fed to the
# inference jobs instead of the engine's defaults. Off by default: on the H200 the tuned options
# lost to the defaults on 9 of 10 networks (docs/model.md). Only planned where the GPU engine
# runs (common.smk: TUNE); the rule can still be asked for by its output file, e.g.
#   snakemake results/synthetic/tuned/neuron1024-l120.h100-sxm.json
# and without a GPU spdnn.model picks its documented default preset (spdnn/model/hardware.json).
if TUNE:
    from spdnn.model.hardware import gpu_slug
    from spdnn.model.tune import detect_gpu

    GPU_NAME = detect_gpu() or ""  # the first GPU's name from nvidia-smi ('' on a cluster's login node)
    GPU_SLUG = gpu_slug(GPU_NAME or None)
else:
    GPU_NAME, GPU_SLUG = "", "default"


rule tune:
    output:
        f"{OUT}/tuned/neuron{{N}}-l{{L}}.{{gpu_slug}}.json",
    log:
        f"{OUT}/logs/tune-neuron{{N}}-l{{L}}.{{gpu_slug}}.log",
    conda:
        ENV
    resources:
        machine=1,
    params:
        # without a GPU the model's documented default preset is used (no --gpu)
        gpu=["--gpu", GPU_NAME] if GPU_NAME else [],  # a list: `:q` quotes each
        inputs=config["inputs"],
    shell:
        "python -m spdnn model tune --neurons {wildcards.N:q} --layers {wildcards.L:q} --inputs {params.inputs:q}"
        " {params.gpu:q} --output {output:q} 2> {log:q}"
