# Aggregation: one table row per network, engine and device (CSV, Markdown, and HTML shown in the
# report), the plots (PNG, with an SVG twin for the report), and this run next to published
# figures; all of it in `snakemake --report report.html`. GPU-only outputs (the roofline plot,
# the cost model's check) exist only where the GPU engine runs (common.smk: USE_GPU, TUNE).
ROOFLINE = f"{OUT}/roofline.png"


rule aggregate:
    input:
        results=[f"{OUT}/neuron{n['neurons']}-l{n['layers']}/{ENGINE}.json" for n in NETWORKS],
        published=f"{REPO}/spdnn/data/published.csv",
        peers=f"{REPO}/spdnn/data/peers.csv",
    output:
        csv=TABLE_CSV,
        markdown=TABLE_MD,
        html=report(f"{OUT}/table.html", caption="../report/table.rst", category="Throughput", labels={"what": "table"}),
        plot=PLOT,
        plot_svg=report(
            svg(PLOT),
            caption="../report/edges_per_second.rst",
            category="Throughput",
            labels={"what": "edges/s by network"},
        ),
        active_rows=f"{OUT}/active_rows.png",
        active_rows_svg=report(
            f"{OUT}/active_rows.svg",
            caption="../report/active_rows.rst",
            category="Active rows",
            labels={"what": "active rows per layer"},
        ),
        comparison=COMPARISON,
        comparison_html=report(
            f"{OUT}/published_comparison.html",
            caption="../report/published.rst",
            category="Published figures",
            labels={"what": "comparison"},
        ),
        peers=f"{OUT}/peers_comparison.csv",
        peers_html=report(
            f"{OUT}/peers_comparison.html",
            caption="../report/peers.rst",
            category="Published figures",
            labels={"what": "the field's codes, measured here"},
        ),
        # the bandwidth roofline: GPUs only
        roofline=[ROOFLINE] if USE_GPU else [],
        roofline_svg=(
            [
                report(
                    svg(ROOFLINE), caption="../report/roofline.rst", category="Throughput", labels={"what": "roofline"}
                )
            ]
            if USE_GPU
            else []
        ),
    log:
        f"{OUT}/logs/aggregate.log",
    conda:
        ENV
    resources:
        machine=1,
    params:
        roofline=["--roofline", ROOFLINE] if USE_GPU else [],  # a list: `:q` quotes each
        gpu=USE_GPU,  # for the captions
    shell:
        "python -m spdnn aggregate {input.results:q} --csv {output.csv:q} --markdown {output.markdown:q}"
        " --plot {output.plot:q} {params.roofline:q} --active-rows {output.active_rows:q}"
        " --published {input.published:q} --comparison {output.comparison:q}"
        " --peers {input.peers:q} --peers-comparison {output.peers:q} 2> {log:q}"


rule model_check:
    input:
        results=[f"{OUT}/neuron{n['neurons']}-l{n['layers']}/{ENGINE}.json" for n in NETWORKS],
        tuned=[f"{OUT}/tuned/neuron{n['neurons']}-l{n['layers']}.{GPU_SLUG}.json" for n in NETWORKS],
    output:
        png=f"{OUT}/model_check.png",
        svg=report(
            f"{OUT}/model_check.svg",
            caption="../report/model_check.rst",
            category="Cost model",
            labels={"what": "predicted vs measured"},
        ),
    log:
        f"{OUT}/logs/model_check.log",
    conda:
        ENV
    resources:
        machine=1,
    shell:
        "python -m spdnn model-check {input.results:q} --tuned {input.tuned:q} --plot {output.png:q} 2> {log:q}"


rule scaling:
    input:
        [
            f"{OUT}/scaling/neuron{n['neurons']}-l{n['layers']}/gpus{g}.json"
            for n in NETWORKS
            for g in config.get("scaling", {}).get("gpus", [])
        ],
    output:
        csv=f"{OUT}/scaling.csv",
        plot=f"{OUT}/scaling.png",
        svg=report(
            f"{OUT}/scaling.svg",
            caption="../report/scaling.rst",
            category="Multi-GPU scaling",
            labels={"what": "scaling"},
        ),
    log:
        f"{OUT}/logs/scaling.log",
    conda:
        ENV
    resources:
        machine=1,
    shell:
        "python -m spdnn scaling {input:q} --csv {output.csv:q} --plot {output.plot:q} 2> {log:q}"
