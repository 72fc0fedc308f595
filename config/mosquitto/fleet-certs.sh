#!/usr/bin/env bash
# Issue a fleet's TLS material for Mosquitto, the nodes and the tools, and the matching ACLs.
#
#   fleet-certs.sh DIR ca                    the fleet CA (DIR/ca.crt, .key) that signs the
#                                            nodes and the broker's certificate (DIR/broker.crt,
#                                            .key) for HOST (default localhost; BROKER_HOST=...),
#                                            the ops CA (DIR/ops-ca.crt, .key) that signs the
#                                            tools, and the ACL files DIR/acl and DIR/ops.acl
#   fleet-certs.sh DIR node FLEET NODE       a node certificate, CN "FLEET.NODE" (the broker's
#                                            username and client id for it), and its ACL block
#   fleet-certs.sh DIR client NAME           a dispatch/ops tool certificate of the ops CA,
#                                            CN NAME, and its ACL block (read all, send commands)
#   fleet-certs.sh DIR feed NAME [FLEET...]  a read-only certificate of the ops CA for the
#                                            transit feed (`edgectl feed`), CN NAME: it reads
#                                            the FLEETs' topics (every fleet without one) and
#                                            writes nothing, not even commands
#   fleet-certs.sh DIR acl                   rewrite every node's block of DIR/acl (found by its
#                                            `# node FLEET/NODE` line) with the current rules,
#                                            each under the prefix it was issued with; the old
#                                            file is kept as DIR/acl.old. Run it after upgrading
#                                            this script, then `systemctl reload mosquitto`
#
# Run it as root on the broker: the broker's key and the ACLs are then root:mosquitto 0640 in
# a root:mosquitto 0750 DIR, so Mosquitto still reads them after it drops root (set
# BROKER_GROUP if its group has another name). Every other key stays root 0600. Copy
# DIR/ca.crt, DIR/FLEET.NODE.crt and .key to the node (/etc/edged/tls/) and point
# [broker.tls] at them. After `node`, `client` or `feed`, `systemctl reload mosquitto`.
set -euo pipefail

usage="usage: fleet-certs.sh DIR ca|node FLEET NODE|client NAME|feed NAME [FLEET...]|acl"
dir=${1:?$usage}
what=${2:?$usage}
days=${DAYS:-825}
prefix=${PREFIX:-rnst/v1}
group=${BROKER_GROUP:-mosquitto}
mkdir -p "$dir"
umask 077

issue() {  # $1 name (file stem), $2 CN, $3 extra openssl x509 extension text, $4 CA stem
    local ca=${4:-ca}
    [ -e "$dir/$1.key" ] && {
        echo "fleet-certs: $dir/$1.key exists; not overwriting (remove it to issue anew)" >&2; exit 1; }
    openssl ecparam -name prime256v1 -genkey -noout -out "$dir/$1.key"
    openssl req -new -key "$dir/$1.key" -subj "/CN=$2" -out "$dir/$1.csr"
    printf '%s\n' "$3" > "$dir/$1.ext"
    openssl x509 -req -in "$dir/$1.csr" -CA "$dir/$ca.crt" -CAkey "$dir/$ca.key" \
        -CAcreateserial -days "$days" -sha256 -extfile "$dir/$1.ext" -out "$dir/$1.crt" 2>/dev/null
    rm -f "$dir/$1.csr" "$dir/$1.ext"
    chmod 600 "$dir/$1.key"
    chmod 644 "$dir/$1.crt"
}

node_acl() {  # $1 fleet, $2 node, $3 prefix: the node's block of DIR/acl, on stdout
    # Only the shapes of docs/topics.md, each exactly as deep as edged publishes it (the
    # outbound table of edged/topics.py; tests/integration/test_broker_security.py holds this
    # list to it): a `#` here would let one stolen key plant retained messages on as many
    # topics, as deep, as it likes. `+` only where a level is a name (an event's or alarm's
    # kind, a command's name in up to four dotted words, a tool's client id).
    local base=$3/$1/$2 topic
    printf '\n# node %s/%s\nuser %s.%s\n' "$1" "$2" "$1" "$2"
    for topic in state position occupancy vehicle vehicle/faults trip journey 'events/+' \
        'alarm/+' kiosk/requests health health/beat update 'reply/+' 'reply/+/+' \
        'reply/+/+/+' 'reply/+/+/+/+'; do
        printf 'topic write %s/%s\n' "$base" "$topic"
    done
    printf 'topic write %s/%s/_replies/+\n' "$3" "$1"
    printf 'topic read %s/cmd/#\n' "$base"
}

nodes_acl_header() {
    cat <<ACL
# Written by fleet-certs.sh: the nodes' listener (8883). The username is the certificate's CN.
# A node writes only its outbound topics, each as deep as the contract has it, and replies
# under its fleet's _replies/; it reads only its own commands: it can never write a cmd/
# topic, its own included.
ACL
}

new_ca() {  # $1 stem, $2 CN
    [ -e "$dir/$1.key" ] && { echo "fleet-certs: $dir/$1.key exists; not overwriting" >&2; exit 1; }
    openssl ecparam -name prime256v1 -genkey -noout -out "$dir/$1.key"
    openssl req -new -x509 -key "$dir/$1.key" -subj "/CN=$2" -days 3650 -sha256 -out "$dir/$1.crt"
    chmod 600 "$dir/$1.key"; chmod 644 "$dir/$1.crt"
}

broker_reads() {  # what Mosquitto opens after dropping root: group-readable, nothing more
    chmod 644 "$dir"/*.crt
    if getent group "$group" >/dev/null && chgrp "$group" "$dir" "$dir/broker.key" "$dir/acl" \
        "$dir/ops.acl" 2>/dev/null; then
        chmod 750 "$dir"
        chmod 640 "$dir/broker.key" "$dir/acl" "$dir/ops.acl"
    else
        chmod 755 "$dir"
        echo "fleet-certs: warning: could not give group '$group' read access to" \
            "$dir/broker.key, acl and ops.acl; Mosquitto cannot read them once it drops root." \
            "Run this as root on the broker, or set BROKER_GROUP to Mosquitto's group." >&2
    fi
}

case "$what" in
    ca)
        new_ca ca "edged fleet CA"
        new_ca ops-ca "edged fleet ops CA"
        host=${BROKER_HOST:-localhost}
        issue broker "$host" "subjectAltName=DNS:$host,DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
        nodes_acl_header > "$dir/acl"
        cat > "$dir/ops.acl" <<ACL
# Written by fleet-certs.sh: the tools' listener (8884). The username is the certificate's CN.
# Dispatch and ops tools read every node and write only commands; a feed reads, never writes.
ACL
        broker_reads
        echo "fleet CA, ops CA and broker certificate in $dir"
        ;;
    node)
        fleet=${3:?node needs FLEET}; node=${4:?node needs NODE}
        [[ "$fleet" =~ ^[a-z0-9][a-z0-9_-]*$ && "$node" =~ ^[a-z0-9][a-z0-9_-]*$ ]] || {
            echo "fleet-certs: fleet and node are [a-z0-9_-] (they are topic levels)" >&2; exit 2; }
        [ -e "$dir/acl" ] || { echo "fleet-certs: run 'fleet-certs.sh $dir ca' first" >&2; exit 2; }
        issue "$fleet.$node" "$fleet.$node" "extendedKeyUsage=clientAuth"
        node_acl "$fleet" "$node" "$prefix" >> "$dir/acl"
        broker_reads
        echo "node certificate $dir/$fleet.$node.crt (CN $fleet.$node)"
        ;;
    client)
        name=${3:?client needs NAME}
        [[ "$name" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || {
            echo "fleet-certs: a client NAME is letters, digits, _ . -" >&2; exit 2; }
        [ -e "$dir/ops.acl" ] || { echo "fleet-certs: run 'fleet-certs.sh $dir ca' first" >&2; exit 2; }
        issue "$name" "$name" "extendedKeyUsage=clientAuth" ops-ca
        printf '\nuser %s\ntopic read %s/#\ntopic write %s/+/+/cmd/#\n' "$name" "$prefix" \
            "$prefix" >> "$dir/ops.acl"
        broker_reads
        echo "client certificate $dir/$name.crt (CN $name, ops CA)"
        ;;
    feed)
        name=${3:?feed needs NAME}
        [[ "$name" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || {
            echo "fleet-certs: a feed NAME is letters, digits, _ . -" >&2; exit 2; }
        shift 3
        for fleet in "$@"; do
            [[ "$fleet" =~ ^[a-z0-9][a-z0-9_-]*$ ]] || {
                echo "fleet-certs: a fleet is [a-z0-9_-] (it is a topic level)" >&2; exit 2; }
        done
        [ -e "$dir/ops.acl" ] || { echo "fleet-certs: run 'fleet-certs.sh $dir ca' first" >&2; exit 2; }
        issue "$name" "$name" "extendedKeyUsage=clientAuth" ops-ca
        {
            # read only: no `topic write` line, so Mosquitto refuses every publish
            printf '\n# feed (read-only)\nuser %s\n' "$name"
            if [ $# -eq 0 ]; then
                printf 'topic read %s/#\n' "$prefix"
            else
                for fleet in "$@"; do printf 'topic read %s/%s/#\n' "$prefix" "$fleet"; done
            fi
        } >> "$dir/ops.acl"
        broker_reads
        echo "feed certificate $dir/$name.crt (CN $name, ops CA, read-only)"
        ;;
    acl)
        [ -e "$dir/acl" ] || { echo "fleet-certs: no $dir/acl to rewrite" >&2; exit 2; }
        new=$(mktemp "$dir/acl.XXXXXX")
        nodes_acl_header > "$new"
        count=0
        while read -r fleet node; do
            # the prefix this node was issued with: the one its `state` line names
            was=$(sed -n "s|^topic write \(.*\)/$fleet/$node/state\$|\1|p" "$dir/acl" | head -n 1)
            node_acl "$fleet" "$node" "${was:-$prefix}" >> "$new"
            count=$((count + 1))
        done < <(sed -n 's|^# node \([a-z0-9][a-z0-9_-]*\)/\([a-z0-9][a-z0-9_-]*\)$|\1 \2|p' "$dir/acl")
        users=$(grep -c '^user ' "$dir/acl" || true)
        [ "$users" -eq "$count" ] || echo "fleet-certs: warning: $dir/acl had $users user" \
            "block(s), $count of them nodes written by this script; the others are not in the" \
            "new file (copy them back from $dir/acl.old)" >&2
        cp -p "$dir/acl" "$dir/acl.old"
        chmod 600 "$new"
        mv "$new" "$dir/acl"
        broker_reads
        echo "rewrote the ACL blocks of $count node(s) in $dir/acl (the old file: $dir/acl.old)"
        ;;
    *)
        echo "fleet-certs: unknown action $what (ca, node, client, feed or acl)" >&2; exit 2
        ;;
esac
