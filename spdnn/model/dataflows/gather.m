# The cuda engine's kernel per layer: spdnn_layer in spdnn/engines/kernels/spdnn_layer.cu.
# Block b works on the tile of 32 rows b / gx and on the distinct columns
# u = (b % gx) * WARPS + warp, stepping gx * WARPS; each lane is one row of the tile and keeps
# all KW gathers of a column in flight (registers) before the KW ordered adds.
Kernel gather
Param WARPS 16       # warps per block (-DWARPS, engine option warps)
Param GF 16          # blocks per SM aimed at (engine option grid_factor)
Variant merged
# grid: one cluster of gx blocks per tile of 32 rows (gx: the engine's launch rule)
SpatialMap(32, 32) r
Cluster(max(1, min(cdiv(Sz(j), WARPS), cdiv(SMS * GF, cdiv(Sz(r), 32))))) block
SpatialMap(WARPS, WARPS) j       # the gx blocks of a tile split its columns, folded in time
Cluster(WARPS) warp
SpatialMap(1, 1) j               # one column per warp at a time
Cluster(32) lane
SpatialMap(1, 1) r               # one row per lane: a warp reads a 128-byte line per nonzero
TemporalMap(Sz(k), Sz(k)) k      # all KW nonzeros at once: KW gathers in flight per lane
# Yin and W are read through L1 (the default); outputs are streamed stores to L2 and HBM
Stage Yout l2
Fuse 1
Compact every 8 bytes 6.4e+07 fraction 0.0625
Batch 0
