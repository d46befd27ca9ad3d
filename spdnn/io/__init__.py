"""Reading the challenge's TSV files and the binary Arrow cache built from them."""
