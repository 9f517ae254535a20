"""The zoo: the catalog of ready-to-serve frozen graphs and the scripts that build them."""
