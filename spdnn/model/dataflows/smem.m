# A row tile staged in shared memory per layer (Hidayetoglu et al. 2020): every block copies its
# tile of R rows (all input neurons) into shared memory once, then gathers from it; weights are
# read through L1. The cuda engine has no such kernel: model only, never measured.
Kernel smem
Param WARPS 16
Param GF 16
Param R 32
Variant merged
SpatialMap(R, R) r
Cluster(max(1, min(cdiv(Sz(j), WARPS * cdiv(32, R)), cdiv(SMS * GF, cdiv(Sz(r), R))))) block
SpatialMap(WARPS * cdiv(32, R), WARPS * cdiv(32, R)) j
Cluster(WARPS) warp
SpatialMap(cdiv(32, R), cdiv(32, R)) j
Cluster(32) lane
SpatialMap(1, 1) r
SpatialMap(1, 1) j
TemporalMap(Sz(k), Sz(k)) k
Stage Yin smem
Stage Yout l2
Fuse 1
Compact every 8 bytes 6.4e+07 fraction 0.0625
Batch 0
