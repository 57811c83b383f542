"""The Hugging Face Hub's HTTP protocol, server side: the URL table, one handler per endpoint, the data they pass.

Owns :mod:`.routes` (which URL and method reach which handler), :mod:`.handlers` (the model info,
tree, paths-info and resolve endpoints with Range, the LFS headers and the Hub's error codes),
:mod:`.protocol` (a request, a response, an error answer) and :mod:`.store` (a served file and
what a repository store answers). Two servers use it: the test hub (:mod:`phaita.testing.hub`, which
adds faults) and the station mirror (:mod:`phaita.station`, a production server). It imports only
the standard library and never :mod:`phaita.testing`, so the station does not depend on test code.
"""
