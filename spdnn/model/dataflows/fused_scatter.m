# The cuda engine's fused segments of full-width layers (variant dedup): spdnn_fused_scatter in
# spdnn/engines/kernels/spdnn_layer.cu. One block per tile of 32 rows runs the launch's layers
# (a segment, ending at a check point) with ONE feature buffer in shared memory (32 x 4 B x the
# width: features stay on chip across the segment). Per layer each warp computes its distinct
# columns u = warp + i * WARPS (i < REGS) from the buffer into registers, a barrier ends the
# layer's reads, then each value is written to every output neuron of its column in the same
# buffer (the scatter stores), through the layer's output lists staged in shared memory (read
# once per layer per tile), and a second barrier publishes them. The layer's columns are staged
# while the previous layer computes (cp.async, two buffers).
# The engine's rule (spdnn.engines.layer_plan.fusable): a layer fuses when both its widths are at
# most FUSE_WIDTH (layer_plan.FUSE_WIDTH_SCATTER), its distinct columns at most WARPS x REGS
# (layer_plan.SCATTER_REGS, the kernel's FUSE_REGS) and the segment's shared memory fits a
# block; the other layers (every layer of N >= 2048) run with the kernel per layer (gather.m).
Kernel fused_scatter
Param WARPS 16        # warps per block (engine option warps)
Param GF 16           # grid_factor of the layers that run with gather.m
Param R 32            # rows per tile (the engine: 32; 8 or 16: model only, 32 / R columns per warp)
Param REGS 16         # distinct columns a warp holds in registers per layer (FUSE_REGS)
Param FUSE_WIDTH 1024 # widest fused layer (layer_plan.FUSE_WIDTH_SCATTER)
Variant dedup
TemporalMap(Sz(l), Sz(l)) l      # one launch per segment
SpatialMap(R, R) r               # one block per tile of R rows
Cluster(WARPS) warp
TemporalMap(1, 1) l              # the block steps through the layers (two barriers each)
SpatialMap(cdiv(32, R), cdiv(32, R)) j   # warps take distinct columns, folded in time (at most REGS folds)
Cluster(32) lane
SpatialMap(1, 1) r               # a row per lane ...
SpatialMap(1, 1) j               # ... and 32 / R columns side by side when R < 32
TemporalMap(Sz(k), Sz(k)) k
Stage Yin smem
Stage Yout smem scatter          # into Yin's buffer after a barrier, through staged output lists
Stage W smem double
Fuse 8 upto FUSE_WIDTH cols WARPS * REGS * cdiv(32, R) else gather
Compact every 8 bytes 6.4e+07 fraction 0.0625
Batch 0
