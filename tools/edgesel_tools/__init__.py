"""edgesel's tools: the fleet simulator (``edgesel_tools.sim``), the load test (``edgesel_tools.bench``) and
the demo (``edgesel_tools.demo``). A distribution of their own, so the server's wheel needs none of them."""

import importlib.metadata

__version__ = importlib.metadata.version("edgesel-tools")
