# Aggregation: one table row per network, engine and device (CSV, Markdown), the plots, and
# this run next to published figures; all of it in `snakemake --report report.html`.


rule aggregate:
    input:
        results=[f"{OUT}/neuron{n['neurons']}-l{n['layers']}/{ENGINE}.json" for n in NETWORKS],
        published=f"{workflow.basedir}/spdnn/data/published.csv",
    output:
        csv=report(TABLE_CSV, caption="../report/table.rst", category="Throughput", labels={"what": "table"}),
        markdown=TABLE_MD,
        plot=report(PLOT, caption="../report/edges_per_second.rst", category="Throughput",
                    labels={"what": "edges/s by network"}),
        roofline=report(f"{OUT}/roofline.png", caption="../report/roofline.rst", category="Throughput",
                        labels={"what": "roofline"}),
        active_rows=report(f"{OUT}/active_rows.png", caption="../report/active_rows.rst",
                           category="Active rows", labels={"what": "active rows per layer"}),
        comparison=report(f"{OUT}/published_comparison.csv", caption="../report/published.rst",
                          category="Published figures", labels={"what": "comparison"}),
    conda:
        ENV
    log:
        f"{OUT}/logs/aggregate.log",
    shell:
        "python -m spdnn aggregate {input.results:q} --csv {output.csv:q} --markdown {output.markdown:q}"
        " --plot {output.plot:q} --roofline {output.roofline:q} --active-rows {output.active_rows:q}"
        " --published {input.published:q} --comparison {output.comparison:q} 2> {log:q}"


rule model_check:
    input:
        results=[f"{OUT}/neuron{n['neurons']}-l{n['layers']}/{ENGINE}.json" for n in NETWORKS],
        tuned=[f"{OUT}/tuned/neuron{n['neurons']}-l{n['layers']}.{GPU_SLUG}.json" for n in NETWORKS],
    output:
        report(f"{OUT}/model_check.png", caption="../report/model_check.rst", category="Cost model",
               labels={"what": "predicted vs measured"}),
    conda:
        ENV
    log:
        f"{OUT}/logs/model_check.log",
    shell:
        "python -m spdnn model-check {input.results:q} --tuned {input.tuned:q} --plot {output:q} 2> {log:q}"



rule scaling:
    input:
        [
            f"{OUT}/scaling/neuron{n['neurons']}-l{n['layers']}/gpus{g}.json"
            for n in NETWORKS
            for g in config.get("scaling", {}).get("gpus", [])
        ],
    output:
        csv=f"{OUT}/scaling.csv",
        plot=report(f"{OUT}/scaling.png", caption="../report/scaling.rst", category="Multi-GPU scaling",
                    labels={"what": "scaling"}),
    conda:
        ENV
    log:
        f"{OUT}/logs/scaling.log",
    shell:
        "python -m spdnn scaling {input:q} --csv {output.csv:q} --plot {output.plot:q} 2> {log:q}"
