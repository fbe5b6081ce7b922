#!/bin/sh
# Builds the local test image ferrodactyl/test-base from Debian's busybox-static.
# No registry is reachable from the test machines, so every container the wings
# tests start runs this image. Idempotent: does nothing when the image exists
# (set FORCE=1 to rebuild). Fails loudly when Docker or apt is unusable.
set -eu

IMAGE="${TEST_IMAGE:-ferrodactyl/test-base}"
# Bump when the image contents change so stale local images are rebuilt.
REVISION=2

if ! command -v docker >/dev/null 2>&1; then
    echo "test-image.sh: docker CLI not found; the wings tests need a real Docker engine" >&2
    exit 1
fi
if ! docker info >/dev/null 2>&1; then
    echo "test-image.sh: cannot reach the Docker engine (is dockerd running?)" >&2
    exit 1
fi
current="$(docker image inspect -f '{{index .Config.Labels "ferrodactyl.revision"}}' "$IMAGE" 2>/dev/null || true)"
if [ "${FORCE:-0}" != "1" ] && [ "$current" = "$REVISION" ]; then
    exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"

if ! apt-get download busybox-static >/dev/null 2>&1; then
    apt-get update >/dev/null
    apt-get download busybox-static
fi
deb="$(ls busybox-static_*.deb | head -n1)"
dpkg-deb -x "$deb" pkg

mkdir -p rootfs/bin rootfs/sbin rootfs/usr/bin rootfs/usr/sbin rootfs/tmp rootfs/etc \
         rootfs/home/container rootfs/proc rootfs/sys rootfs/dev rootfs/mnt/server rootfs/mnt/install
cp pkg/bin/busybox rootfs/bin/busybox
chmod 0755 rootfs/bin/busybox
for applet in $(rootfs/bin/busybox --list); do
    [ "$applet" = "busybox" ] && continue
    ln -sf /bin/busybox "rootfs/bin/$applet"
done
chmod 1777 rootfs/tmp
# Like Pterodactyl's yolks images: render STARTUP's {{VAR}} placeholders from the
# environment and run it from /home/container.
cat > rootfs/entrypoint.sh <<'ENTRY'
#!/bin/sh
cd /home/container || exit 1
MODIFIED_STARTUP=$(echo "$STARTUP" | sed -e 's/{{/${/g' -e 's/}}/}/g')
echo ":/home/container$ ${MODIFIED_STARTUP}"
eval "exec ${MODIFIED_STARTUP}"
ENTRY
chmod 0755 rootfs/entrypoint.sh
printf 'root:x:0:0:root:/root:/bin/sh\ncontainer:x:988:988::/home/container:/bin/sh\n' > rootfs/etc/passwd
printf 'root:x:0:\ncontainer:x:988:\n' > rootfs/etc/group

tar -C rootfs -c . | docker import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'WORKDIR /home/container' \
    -c "LABEL ferrodactyl.revision=$REVISION" \
    -c 'CMD ["/bin/sh", "/entrypoint.sh"]' \
    - "$IMAGE" >/dev/null
echo "test-image.sh: built $IMAGE"
