# Inference: one job per network and input shard, each validated against the truth, then
# the shards of a network merged into one result.


def infer_inputs(wildcards):
    n = int(wildcards.N)
    return {
        "weights": f"{CACHE}/neuron{n}-l{max_layers(n)}.weights.arrow",
        "inputs": f"{CACHE}/sparse-images-{n}.arrow",
        "truth": f"{RAW}/{challenge.truth_file(n, truth_layers_for(n, wildcards.L))}",
    }


rule infer:
    input:
        unpack(infer_inputs),
    output:
        result=f"{OUT}/neuron{{N}}-l{{L}}/{ENGINE}.shard{{shard}}.json",
        categories=f"{OUT}/neuron{{N}}-l{{L}}/{ENGINE}.shard{{shard}}.categories.tsv",
    params:
        shard=lambda w: f"{w.shard}/{SHARDS}",
        options=json.dumps(config.get("engine_options", {})),
        config=json.dumps(config),
    resources:
        gpu=gpu_count(),
    log:
        f"{OUT}/logs/infer-neuron{{N}}-l{{L}}-shard{{shard}}.log",
    shell:
        "spdnn --quiet infer --weights {input.weights:q} --inputs-cache {input.inputs:q} --truth {input.truth:q}"
        " --layers {wildcards.L} --inputs {config[inputs]} --engine {ENGINE} --repeats {config[repeats]}"
        " --engine-options {params.options:q} --shard {params.shard} --output {output.result:q}"
        " --categories {output.categories:q} --config {params.config:q} 2> {log}"


rule merge_shards:
    input:
        results=expand(f"{OUT}/neuron{{{{N}}}}-l{{{{L}}}}/{ENGINE}.shard{{shard}}.json", shard=range(SHARDS)),
        categories=expand(
            f"{OUT}/neuron{{{{N}}}}-l{{{{L}}}}/{ENGINE}.shard{{shard}}.categories.tsv", shard=range(SHARDS)
        ),
        truth=lambda w: infer_inputs(w)["truth"],
    output:
        result=f"{OUT}/neuron{{N}}-l{{L}}/{ENGINE}.json",
        categories=f"{OUT}/neuron{{N}}-l{{L}}/{ENGINE}.categories.tsv",
    log:
        f"{OUT}/logs/merge-neuron{{N}}-l{{L}}.log",
    shell:
        "spdnn merge {input.results:q} --truth {input.truth:q} --inputs {config[inputs]}"
        " --output {output.result:q} --categories {output.categories:q} 2> {log}"
