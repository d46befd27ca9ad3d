# Sparse networks of arbitrary structure (spdnn.dag), outside the default target:
#   snakemake dag_all
# generate -> convert (check + levelise into an Arrow cache) -> run the configured engine and
# validate it against the sequential reference (levels exactly, outputs within float32
# rounding) -> one table. Settings: the optional `dag:` section of the config.
DAG_CONFIG = config.get("dag", {})
DAG_SIZES = DAG_CONFIG.get("sizes", [10000, 100000])
DAG_KINDS = DAG_CONFIG.get("kinds", ["pruned", "evolved"])
DAG_BATCH = DAG_CONFIG.get("batch", 100)
DAG_ENGINE = DAG_CONFIG.get("engine", "auto")
DAG_SEED = DAG_CONFIG.get("seed", 1)
DAG_RAW = f"{config['datadir']}/dag/raw"
DAG_CACHE = f"{config['datadir']}/dag/cache"
DAG_OUT = f"{config['outdir']}/dag"
DAG_NETS = [f"{kind}-e{size}" for kind in DAG_KINDS for size in DAG_SIZES]
DAG_CPU_ENGINES = ("sequential", "vectorised", "compiled", "threaded")
# the run's software: pycuda's env for the GPU engines (auto: as the main engine was decided)
DAG_ENV = ENV if DAG_ENGINE in DAG_CPU_ENGINES else INFER_ENV if DAG_ENGINE == "auto" else GPU_ENV


rule dag_generate:
    output:
        edges=f"{DAG_RAW}/{{kind}}-e{{edges}}.edges.tsv",
        nodes=f"{DAG_RAW}/{{kind}}-e{{edges}}.nodes.tsv",
    log:
        f"{DAG_OUT}/logs/generate-{{kind}}-e{{edges}}.log",
    wildcard_constraints:
        kind="pruned|evolved|random-order|deep-narrow|neat",
        edges=r"\d+",
    conda:
        ENV
    resources:
        machine=1,
    params:
        prefix=lambda w: f"{DAG_RAW}/{w.kind}-e{w.edges}",
        seed=DAG_SEED,
    shell:
        "python -m spdnn --quiet dag generate --kind {wildcards.kind:q} --edges {wildcards.edges:q}"
        " --seed {params.seed:q} --prefix {params.prefix:q} 2> {log:q}"


rule dag_convert:
    input:
        edges=f"{DAG_RAW}/{{net}}.edges.tsv",
        nodes=f"{DAG_RAW}/{{net}}.nodes.tsv",
    output:
        arrow=f"{DAG_CACHE}/{dag_cache('{net}')}",
        # written after the cache; a damaged cache loses it when read, so the next run rebuilds
        checksum=checksum_file(f"{DAG_CACHE}/{dag_cache('{net}')}"),
    log:
        f"{DAG_OUT}/logs/convert-{{net}}.log",
    conda:
        ENV
    resources:
        machine=1,
    shell:
        "python -m spdnn --quiet dag convert {input.edges:q} {input.nodes:q} {output.arrow:q} 2> {log:q}"


rule dag_run:
    input:
        cache=f"{DAG_CACHE}/{dag_cache('{net}')}",
        checksum=checksum_file(f"{DAG_CACHE}/{dag_cache('{net}')}"),
        edges=f"{DAG_RAW}/{{net}}.edges.tsv",
        nodes=f"{DAG_RAW}/{{net}}.nodes.tsv",
    output:
        f"{DAG_OUT}/{{net}}.{DAG_ENGINE}.json",
    log:
        f"{DAG_OUT}/logs/run-{{net}}.log",
    conda:
        DAG_ENV
    resources:
        gpu=0 if DAG_ENGINE in DAG_CPU_ENGINES else 1,
        machine=WHOLE_MACHINE,  # timed: the machine to itself (common.smk)
    params:
        batch=DAG_BATCH,
        engine=DAG_ENGINE,
        seed=DAG_SEED,
    shell:
        "python -m spdnn --quiet dag run --cache {input.cache:q} --edges {input.edges:q} --nodes {input.nodes:q}"
        " --batch {params.batch:q} --engine {params.engine:q} --reference sequential --seed {params.seed:q}"
        " --output {output:q} 2> {log:q}"


rule dag_table:
    input:
        [f"{DAG_OUT}/{net}.{DAG_ENGINE}.json" for net in DAG_NETS],
    output:
        markdown=f"{DAG_OUT}/table.md",
        plot=f"{DAG_OUT}/speedups.png",
        plot_svg=report(
            f"{DAG_OUT}/speedups.svg",
            caption="../report/dag.rst",
            category="Arbitrary networks",
            labels={"what": "speed-ups"},
        ),
    log:
        f"{DAG_OUT}/logs/table.log",
    conda:
        ENV
    resources:
        machine=1,
    shell:
        "python -m spdnn --quiet dag table {input:q} --markdown {output.markdown:q} --plot {output.plot:q} 2> {log:q}"


rule dag_all:
    input:
        rules.dag_table.output,
