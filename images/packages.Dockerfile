# A base image with the Debian packages of the frameworks that come from Debian on its release and arch (ONNX
# Runtime and OpenCV on 32-bit trixie): installed with apt from the mirror, the one base build with a network.
# (debootstrap --include cannot order a dependency tree that large.)
ARG BASE
FROM ${BASE}
ARG PACKAGES
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $PACKAGES \
 && rm -rf /var/lib/apt/lists/* /usr/share/doc/*
