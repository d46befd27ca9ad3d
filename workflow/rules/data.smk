# Data stage: official files (downloaded) or synthetic ones (generated) in the official
# layout under RAW, then converted once into the Arrow cache under CACHE.


if SOURCE == "synthetic":
    # One generate rule per N, since its outputs (the truth of every configured L) depend on N.
    for _N in sorted({n["neurons"] for n in NETWORKS}):
        _truth_layers = sorted({truth_layers(n) for n in NETWORKS if n["neurons"] == _N})

        rule:
            name:
                f"generate_{_N}"
            output:
                weights=f"{RAW}/{challenge.weights_archive(_N)}",
                inputs=f"{RAW}/{challenge.inputs_file(_N)}",
                truth=[f"{RAW}/{challenge.truth_file(_N, L)}" for L in _truth_layers],
            log:
                f"{config['datadir']}/logs/generate-{_N}.log",
            conda:
                ENV
            resources:
                machine=1,
            params:
                neurons=_N,
                layers=_truth_layers,  # a list: `:q` quotes each
                inputs=config["inputs"],
                seed=config["data"].get("seed", DEFAULT_SEED),
                root=lambda w, output: Path(output.weights).parents[1],
            shell:
                "python -m spdnn generate --root {params.root:q} --neurons {params.neurons:q} --layers {params.layers:q}"
                " --inputs {params.inputs:q} --seed {params.seed:q} 2> {log:q}"

else:

    rule download:
        output:
            f"{RAW}/{{path}}",
        log:
            f"{config['datadir']}/logs/download/{{path}}.log",
        wildcard_constraints:
            path=r"(dnn|mnist)/[^/]+",
        # no Snakemake retries: spdnn.fetch retries what can succeed (within its deadline) and
        # fails at once on what cannot (404, bad gzip, checksum mismatch)
        conda:
            ENV
        resources:
            machine=1,
        params:
            url=lambda w: fetch_url(w.path),
            sha256=lambda w: sha256_option(w.path),
            manifest=f"{RAW}/manifest.json",
        shell:
            "python -m spdnn.fetch {params.url:q} {output:q} --manifest {params.manifest:q}"
            " {params.sha256:q} 2> {log:q}"


rule convert_weights:
    input:
        lambda w: f"{RAW}/{challenge.weights_archive(int(w.N))}",
    output:
        arrow=f"{CACHE}/{weights_cache('{N}', '{L}')}",
        checksum=checksum_file(f"{CACHE}/{weights_cache('{N}', '{L}')}"),
    log:
        f"{config['datadir']}/logs/convert-weights-{{N}}-l{{L}}.log",
    conda:
        ENV
    resources:
        machine=1,
    params:
        source=SOURCE,
    shell:
        "python -m spdnn convert-weights {input:q} {output.arrow:q} --neurons {wildcards.N:q} --layers {wildcards.L:q}"
        " --source {params.source:q} 2> {log:q}"


rule convert_inputs:
    input:
        lambda w: f"{RAW}/{challenge.inputs_file(int(w.N))}",
    output:
        arrow=f"{CACHE}/{inputs_cache('{N}')}",
        checksum=checksum_file(f"{CACHE}/{inputs_cache('{N}')}"),
    log:
        f"{config['datadir']}/logs/convert-inputs-{{N}}.log",
    conda:
        ENV
    resources:
        machine=1,
    params:
        source=SOURCE,
    shell:
        "python -m spdnn convert-inputs {input:q} {output.arrow:q} --neurons {wildcards.N:q} --source {params.source:q}"
        " 2> {log:q}"
