# Aggregation: one table row per network, engine and device; CSV, Markdown and a plot.


rule aggregate:
    input:
        [f"{OUT}/neuron{n['neurons']}-l{n['layers']}/{ENGINE}.json" for n in NETWORKS],
    output:
        csv=TABLE_CSV,
        markdown=TABLE_MD,
        plot=report(PLOT, caption="../report/edges_per_second.rst", category="Throughput"),
    conda:
        ENV
    log:
        f"{OUT}/logs/aggregate.log",
    shell:
        "python -m spdnn aggregate {input:q} --csv {output.csv:q} --markdown {output.markdown:q}"
        " --plot {output.plot:q} 2> {log}"
