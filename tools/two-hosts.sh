#!/bin/sh
# tools/two-hosts.sh: run one MPI job on two "hosts" of this machine, each a network namespace with its
# own address and hostname, joined only by a veth pair, so that the ranks talk over TCP as they would
# between two machines (no shared-memory transport, no loopback between them).
#
#   tools/two-hosts.sh [--timeout SECONDS] [--stats FILE] [--np N] -- PROGRAM [ARGS...]
#
# What it does: creates the namespaces ft2h<PID>a and ft2h<PID>b with 10.77.0.1/24 and 10.77.0.2/24 on a
# veth pair, starts `mpirun -np N -H 10.77.0.1,10.77.0.2` inside the first one (hostname ftune-host-a)
# with --map-by node (rank r runs on host r % 2) and --bind-to none. There is no ssh here, so Open MPI's
# rsh launcher is given an agent (plm_rsh_agent) that starts the remote daemon (orted) in the other
# namespace (hostname ftune-host-b) instead of logging in. Transports: `--mca btl self,tcp` with
# btl_tcp_if_include and oob_tcp_if_include limited to the veth subnet. Unlike ssh the agent passes the
# whole environment on. The job runs under a time limit (default 120 s); whatever happens (success,
# failure, timeout, SIGINT/SIGTERM) the processes left in the namespaces are killed and the namespaces
# and the veth pair are deleted. Namespaces of an earlier run whose creator is dead (a run killed with
# SIGKILL cannot clean up) are deleted first.
#
# --stats FILE writes the namespaces' names ("namespaces=A B") and the bytes each end of the veth pair
# sent ("a_tx_bytes=N", "b_tx_bytes=N"): the proof that the ranks' traffic crossed the link.
#
# Exit status: the job's (124 when it ran out of time), 3 when the namespaces cannot be made (not root,
# no iproute2, no CAP_SYS_ADMIN), 2 on a usage error. Needs root, iproute2, unshare (util-linux) and
# Open MPI's mpirun.
set -u

timeout_s=120
stats=""
np=2
while [ $# -gt 0 ]; do
    case $1 in
    --timeout) timeout_s=$2; shift 2 ;;
    --stats) stats=$2; shift 2 ;;
    --np) np=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "two-hosts: unknown option $1 (usage: tools/two-hosts.sh [--timeout S] [--stats FILE] [--np N] -- PROGRAM [ARGS...])" >&2
       exit 2 ;;
    esac
done
if [ $# -eq 0 ]; then
    echo "two-hosts: no program given (usage: tools/two-hosts.sh [--timeout S] [--stats FILE] [--np N] -- PROGRAM [ARGS...])" >&2
    exit 2
fi
if [ "$(id -u)" != 0 ]; then
    echo "two-hosts: network namespaces need root (run as root)" >&2
    exit 3
fi
for tool in ip unshare mpirun timeout; do
    if ! command -v $tool >/dev/null 2>&1; then
        echo "two-hosts: $tool is not installed (iproute2, util-linux, openmpi-bin, coreutils)" >&2
        exit 3
    fi
done

pfx=ft2h
me=$$
nsa=$pfx${me}a
nsb=$pfx${me}b
work=$(mktemp -d /tmp/$pfx$me.XXXXXX) || exit 3

# Kill what runs in a namespace, then delete it (its end of the veth pair goes with it, and the peer
# with that). A process still inside would keep the namespace alive.
drop_ns() {
    pids=$(ip netns pids "$1" 2>/dev/null)
    if [ -n "$pids" ]; then
        kill -9 $pids 2>/dev/null
        i=0
        while [ -n "$(ip netns pids "$1" 2>/dev/null)" ] && [ $i -lt 50 ]; do
            sleep 0.1
            i=$((i + 1))
        done
    fi
    ip netns del "$1" 2>/dev/null
}

cleanup() {
    drop_ns "$nsa"
    drop_ns "$nsb"
    ip link del "${nsa}" 2>/dev/null # only if the pair was made but never moved
    rm -rf "$work"
}
trap 'cleanup' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# Leftovers of a run that was killed before it could clean up (its pid is gone).
for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
    case $ns in
    $pfx*a | $pfx*b)
        pid=${ns#$pfx}
        pid=${pid%?}
        case $pid in '' | *[!0-9]*) continue ;; esac
        if ! kill -0 "$pid" 2>/dev/null; then
            drop_ns "$ns"
            rm -rf /tmp/$pfx$pid.*
        fi
        ;;
    esac
done

ipa=10.77.0.1
ipb=10.77.0.2
{
    ip netns add "$nsa" &&
    ip netns add "$nsb" &&
    ip link add "$nsa" type veth peer name "$nsb" &&
    ip link set "$nsa" netns "$nsa" &&
    ip link set "$nsb" netns "$nsb" &&
    ip -n "$nsa" addr add $ipa/24 dev "$nsa" &&
    ip -n "$nsb" addr add $ipb/24 dev "$nsb" &&
    ip -n "$nsa" link set lo up &&
    ip -n "$nsb" link set lo up &&
    ip -n "$nsa" link set "$nsa" up &&
    ip -n "$nsb" link set "$nsb" up
} || {
    echo "two-hosts: cannot create the network namespaces and veth pair (needs root with CAP_SYS_ADMIN and CAP_NET_ADMIN)" >&2
    exit 3
}

# The launcher's "remote shell": called as AGENT HOST COMMAND-WORDS..., like ssh, it runs the words
# with sh in the namespace that holds HOST, under that host's name.
cat >"$work/agent" <<EOF
#!/bin/sh
host=\$1
shift
case \$host in
$ipa) ns=$nsa; name=ftune-host-a ;;
$ipb) ns=$nsb; name=ftune-host-b ;;
*) echo "two-hosts agent: unknown host \$host" >&2; exit 255 ;;
esac
exec ip netns exec \$ns unshare --uts sh -c "hostname \$name && \$*"
EOF
chmod +x "$work/agent"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
subnet=10.77.0.0/24
# Not exec'd: the EXIT trap must run after the job.
timeout -k 5 "$timeout_s" ip netns exec "$nsa" unshare --uts sh -c 'hostname ftune-host-a && exec "$@"' sh \
    mpirun -np "$np" -H "$ipa:$np,$ipb:$np" --map-by node --bind-to none \
    --mca plm_rsh_agent "$work/agent" \
    --mca btl self,tcp --mca btl_tcp_if_include $subnet --mca oob_tcp_if_include $subnet \
    "$@"
rc=$?
if [ $rc = 124 ] || [ $rc = 137 ]; then
    echo "two-hosts: the job ran out of its ${timeout_s}s and was killed" >&2
    rc=124
fi
if [ -n "$stats" ]; then
    {
        printf 'namespaces=%s %s\n' "$nsa" "$nsb"
        printf 'a_tx_bytes=%s\n' "$(ip netns exec "$nsa" cat /sys/class/net/$nsa/statistics/tx_bytes 2>/dev/null)"
        printf 'b_tx_bytes=%s\n' "$(ip netns exec "$nsb" cat /sys/class/net/$nsb/statistics/tx_bytes 2>/dev/null)"
    } >"$stats"
fi
exit $rc
