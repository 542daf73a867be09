"""lowbit.cluster: value sets learned from data.

- :func:`kmeans_1d`: batched, weighted 1-D k-means (one problem per row; CLAQ's per-column tables,
  arXiv 2405.17233), torch on CPU/CUDA or faiss.
- :func:`nearest_centroid_1d`, :func:`weighted_sse`: snapping to sorted 1-D tables and its error.
- :class:`KMeansColumnQuantizer`: CLAQ's column quantizer for the GPTQ loop (per-column k-means tables,
  per-column widths, reserved full-precision entries).
- :func:`kmeans_vectors`: vector k-means (torch or faiss); :func:`quantize_additive`: AQLM's additive
  multi-codebook quantization of a layer (residual k-means, beam search, codebook updates; arXiv 2401.06118).

Importing this package pulls in neither faiss nor transformers nor triton.
"""

from lowbit.cluster.additive import (
    AdditiveResult,
    beam_search,
    quantize_additive,
    residual_kmeans_init,
    update_codebooks,
)
from lowbit.cluster.column import KMeansColumnQuantizer
from lowbit.cluster.kmeans1d import (
    FaissUnavailableError,
    KMeans1D,
    kmeans_1d,
    nearest_centroid_1d,
    weighted_sse,
)
from lowbit.cluster.kmeans_vec import kmeans_vectors, nearest_vectors

__version__ = "0.1.0"

__all__ = [
    "AdditiveResult",
    "beam_search",
    "kmeans_vectors",
    "nearest_vectors",
    "quantize_additive",
    "residual_kmeans_init",
    "update_codebooks",
    "FaissUnavailableError",
    "KMeans1D",
    "KMeansColumnQuantizer",
    "__version__",
    "kmeans_1d",
    "nearest_centroid_1d",
    "weighted_sse",
]
