# Sourced (not run) by deploy/lib.sh and Benchmarks/scripts/lib.sh: what the deploy and the
# benchmark scripts share (the one readiness loop, the throwaway test certificate).

# poll_until SECONDS [--pid PID] CMD...: runs CMD every 50 ms until it succeeds, for at most
# SECONDS. Returns 0 when it succeeded, else 1. With --pid, returns 1 at once when process PID
# has exited (a server that died while starting never answers: fail fast).
poll_until() {
    local tries=$(( $1 * 20 )) pid="" i
    shift
    if [[ "$1" == --pid ]]; then pid="$2"; shift 2; fi
    for ((i = 0; i < tries; i++)); do
        "$@" && return 0
        [[ -z "$pid" ]] || kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# port_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# make_test_certificate DIR CA_NAME: a throwaway CA (DIR/ca.pem, ca.key; common name CA_NAME)
# and a certificate it signed for localhost and 127.0.0.1 (DIR/server.pem, server.key), P-256,
# valid 2 days (no key is committed). Needs openssl.
make_test_certificate() {
    local dir="$1"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=$2" \
        -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
        -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$dir/server.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -set_serial 1 -days 2 \
        -extfile "$dir/server.ext" -out "$dir/server.pem" 2>/dev/null
}
