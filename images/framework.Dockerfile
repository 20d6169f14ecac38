# The image of a framework that installs with pip (or is in the base, from Debian): every recipe under images/<name>/
# without a Dockerfile of its own uses this one. The bare-metal bundle is installed by the same
# script from the same wheels, and gets the same entrypoint package.
ARG BASE
FROM ${BASE}
COPY install-framework.sh /opt/edgeorch/install-framework.sh
# First the packages the recipe's `layer` names (torch, for PyTorch and ExecuTorch), in a layer of their own: the same
# layer for every recipe that pins them alike, so a board holding one of those images is sent only the rest of another
COPY layer/ /opt/edgeorch/wheels/
RUN sh /opt/edgeorch/install-framework.sh /opt/edgeorch
COPY wheels/ /opt/edgeorch/wheels/
RUN sh /opt/edgeorch/install-framework.sh /opt/edgeorch && mkdir -p /opt/edgeorch/models
COPY edgeorch_bench/ /opt/edgeorch/edgeorch_bench/
WORKDIR /opt/edgeorch
ENTRYPOINT ["/opt/edgeorch/venv/bin/python", "-m", "edgeorch_bench"]
