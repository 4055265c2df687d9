# The image of bothy itself. No registry is reachable where bothy is
# built, so this starts from the base image bothy builds locally (Debian
# bookworm, debootstrapped) and copies in the static binaries built before it:
# `make image` does both. docs/image.md says how to run it, and why each flag.
ARG BASE=bothy/base
FROM ${BASE}
# iptables: sandboxes' egress rules (DOCKER-USER); debootstrap and
# busybox-static: building the built-in images from their recipes.
RUN apt-get update -q \
	&& DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends iptables debootstrap busybox-static ca-certificates \
	&& rm -rf /var/lib/apt/lists/*
COPY bin/bothyd bin/bothy-agent /usr/local/bin/
ENV BOTHY_LISTEN=0.0.0.0:7070 BOTHY_DATA=/var/lib/bothy
EXPOSE 7070
USER root
ENTRYPOINT ["/usr/local/bin/bothyd"]
