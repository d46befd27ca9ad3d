# Inference: one job per network and input shard, each validated against the truth, then
# the shards of a network merged into one result.


# The config the results record, as a file (not a long JSON argument in every printed command).
rule run_config:
    output:
        f"{OUT}/run-config/{{timed}}.json",
    log:
        f"{OUT}/logs/run-config-{{timed}}.log",
    wildcard_constraints:
        timed="infer|scaling_infer",
    conda:
        ENV
    resources:
        machine=1,
    params:
        json=recorded_config,
    shell:
        "printf '%s\\n' {params.json:q} > {output:q} 2> {log:q}"


localrules:
    run_config,


rule infer:
    input:
        # the caches, the truth, the config to record and (`tune: true`) the tuned options
        unpack(timed_inputs("infer")),
    output:
        result=f"{OUT}/neuron{{N}}-l{{L}}/{ENGINE}.shard{{shard}}.json",
        categories=f"{OUT}/neuron{{N}}-l{{L}}/{ENGINE}.shard{{shard}}.categories.tsv",
    log:
        f"{OUT}/logs/infer-neuron{{N}}-l{{L}}-shard{{shard}}.log",
    conda:
        INFER_ENV
    resources:
        gpu=gpu_count(),
        machine=WHOLE_MACHINE,  # the whole machine: nothing else runs beside a timing (common.smk)
    params:
        shard=lambda w: f"{w.shard}/{SHARDS}",
        options=json.dumps(config.get("engine_options", {})),
        inputs=config["inputs"],
        engine=ENGINE,
        repeats=config["repeats"],
        gpus=lambda w, resources: max(1, int(resources.gpu)),
        tuned=tuned_options_args,
        # made from this result: gone before it reruns, so a failure never leaves them saying "passed"
        stale=lambda w: [
            f"{OUT}/neuron{w.N}-l{w.L}/{ENGINE}.json",
            f"{OUT}/neuron{w.N}-l{w.L}/{ENGINE}.categories.tsv",
            TABLE_CSV,
            TABLE_MD,
            COMPARISON,
        ],
    message:
        f"timing N={{wildcards.N}} L={{wildcards.L}} (shard {{params.shard}}, engine {{params.engine}},"
        f" {{params.repeats}} repeats) {TIMED_WHERE}; log: {{log}}"
    shell:
        "python -m spdnn --quiet infer --weights {input.weights:q} --inputs-cache {input.inputs:q} --truth {input.truth:q}"
        " --layers {wildcards.L:q} --inputs {params.inputs:q} --engine {params.engine:q} --repeats {params.repeats:q}"
        " --engine-options {params.options:q} --shard {params.shard:q} --gpus {params.gpus:q} --output {output.result:q}"
        ' --categories {output.categories:q} --config "$(cat {input.run_config:q})" {params.tuned:q}'
        " --invalidates {params.stale:q}"
        " 2> {log:q}"


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
    conda:
        ENV
    resources:
        machine=1,
    params:
        inputs=config["inputs"],
        stale=[TABLE_CSV, TABLE_MD, COMPARISON],
    shell:
        "python -m spdnn merge {input.results:q} --truth {input.truth:q} --inputs {params.inputs:q}"
        " --output {output.result:q} --categories {output.categories:q} --invalidates {params.stale:q} 2> {log:q}"


# Scaling over the GPUs of a node (config `scaling: {gpus: [1, 2, 4]}`): the whole input of a
# network, once per GPU count, split over that many GPUs (one process each) and validated.
use rule infer as scaling_infer with:
    input:
        unpack(timed_inputs("scaling_infer")),
    output:
        result=f"{OUT}/scaling/neuron{{N}}-l{{L}}/gpus{{G}}.json",
        categories=f"{OUT}/scaling/neuron{{N}}-l{{L}}/gpus{{G}}.categories.tsv",
    log:
        f"{OUT}/logs/scaling-neuron{{N}}-l{{L}}-gpus{{G}}.log",
    resources:
        gpu=lambda w: int(w.G),
        machine=WHOLE_MACHINE,
    params:
        shard="0/1",
        options=json.dumps(config.get("engine_options", {})),
        inputs=config["inputs"],
        engine=ENGINE,
        repeats=config["repeats"],
        gpus=lambda w: int(w.G),
        tuned=tuned_options_args,
        stale=[f"{OUT}/scaling.csv", f"{OUT}/scaling.png"],
    message:
        f"timing N={{wildcards.N}} L={{wildcards.L}} on {{wildcards.G}} GPUs (engine {{params.engine}}) {TIMED_WHERE};"
        " log: {log}"
