# The cuda engine's fused segments: spdnn_fused in spdnn/engines/kernels/spdnn_layer.cu.
# One block per tile of R rows runs the launch's layers (a segment, ending at a check point) with
# the tile in shared memory (an input and an output buffer, swapped per layer) and each layer's
# columns staged in shared memory while the previous layer computes (cp.async, two buffers).
# Layers wider than FUSE_WIDTH (the N-wide input layer; every layer of N >= 16384) run with the
# kernel per layer (gather.m), as the engine does.
Kernel fused
Param WARPS 16       # warps per block (engine option warps)
Param GF 16          # grid_factor of the layers that run with gather.m
Param R 32           # rows per tile (the engine: 32)
Param FUSE_WIDTH 256 # widest fused layer (spdnn.engines.cuda.FUSE_WIDTH)
Variant merged
TemporalMap(Sz(l), Sz(l)) l      # one launch per segment
SpatialMap(R, R) r               # one block per tile
Cluster(WARPS) warp
TemporalMap(1, 1) l              # the block steps through the layers (a barrier after each)
SpatialMap(cdiv(32, R), cdiv(32, R)) j   # warps take columns, folded in time
Cluster(32) lane
SpatialMap(1, 1) r               # a row per lane ...
SpatialMap(1, 1) j               # ... and 32 / R columns side by side when R < 32
TemporalMap(Sz(k), Sz(k)) k
Stage Yin smem
Stage Yout smem
Stage W smem double
Fuse 8 upto FUSE_WIDTH else gather
Compact every 8 bytes 6.4e+07 fraction 0.0625
Batch 0
