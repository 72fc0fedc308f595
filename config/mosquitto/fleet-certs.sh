#!/usr/bin/env bash
# Issue a fleet's TLS material for Mosquitto and the nodes, and the matching ACL lines.
#
#   fleet-certs.sh DIR ca                    a new CA (DIR/ca.crt, DIR/ca.key) and the broker's
#                                            certificate (DIR/broker.crt, .key) for HOST
#                                            (default localhost; set BROKER_HOST=...)
#   fleet-certs.sh DIR node FLEET NODE       a node certificate, CN "FLEET.NODE" (the broker's
#                                            username for it), and its ACL block in DIR/acl
#   fleet-certs.sh DIR client NAME           a dispatch/ops client certificate, CN NAME
#
# Keys are EC P-256, mode 600. Copy DIR/ca.crt, DIR/FLEET.NODE.crt and .key to the node
# (/etc/edged/tls/), and point [broker.tls] at them.
set -euo pipefail

dir=${1:?usage: fleet-certs.sh DIR ca|node FLEET NODE|client NAME}
what=${2:?usage: fleet-certs.sh DIR ca|node FLEET NODE|client NAME}
days=${DAYS:-825}
prefix=${PREFIX:-rnst/v1}
mkdir -p "$dir"
umask 077

issue() {  # $1 name (file stem), $2 CN, $3 extra openssl x509 extension text
    openssl ecparam -name prime256v1 -genkey -noout -out "$dir/$1.key"
    openssl req -new -key "$dir/$1.key" -subj "/CN=$2" -out "$dir/$1.csr"
    printf '%s\n' "$3" > "$dir/$1.ext"
    openssl x509 -req -in "$dir/$1.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
        -CAcreateserial -days "$days" -sha256 -extfile "$dir/$1.ext" -out "$dir/$1.crt" 2>/dev/null
    rm -f "$dir/$1.csr" "$dir/$1.ext"
    chmod 600 "$dir/$1.key"
    chmod 644 "$dir/$1.crt"
}

case "$what" in
    ca)
        [ -e "$dir/ca.key" ] && { echo "fleet-certs: $dir/ca.key exists; not overwriting" >&2; exit 1; }
        openssl ecparam -name prime256v1 -genkey -noout -out "$dir/ca.key"
        openssl req -new -x509 -key "$dir/ca.key" -subj "/CN=edged fleet CA" -days 3650 \
            -sha256 -out "$dir/ca.crt"
        chmod 600 "$dir/ca.key"; chmod 644 "$dir/ca.crt"
        host=${BROKER_HOST:-localhost}
        issue broker "$host" "subjectAltName=DNS:$host,DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
        cat > "$dir/acl" <<ACL
# Written by fleet-certs.sh. The username is the certificate's CN.
# Dispatch and ops read every node and write only commands.
user dispatch
topic read $prefix/#
topic write $prefix/+/+/cmd/#
ACL
        echo "CA and broker certificate in $dir"
        ;;
    node)
        fleet=${3:?node needs FLEET}; node=${4:?node needs NODE}
        [[ "$fleet" =~ ^[a-z0-9][a-z0-9_-]*$ && "$node" =~ ^[a-z0-9][a-z0-9_-]*$ ]] || {
            echo "fleet-certs: fleet and node are [a-z0-9_-] (they are topic levels)" >&2; exit 2; }
        issue "$fleet.$node" "$fleet.$node" "extendedKeyUsage=clientAuth"
        cat >> "$dir/acl" <<ACL

# node $fleet/$node: writes only under its own base, reads only its own commands
user $fleet.$node
topic write $prefix/$fleet/$node/#
topic read $prefix/$fleet/$node/cmd/#
ACL
        echo "node certificate $dir/$fleet.$node.crt (CN $fleet.$node)"
        ;;
    client)
        name=${3:?client needs NAME}
        issue "$name" "$name" "extendedKeyUsage=clientAuth"
        echo "client certificate $dir/$name.crt (CN $name)"
        ;;
    *)
        echo "fleet-certs: unknown action $what (ca, node or client)" >&2; exit 2
        ;;
esac
