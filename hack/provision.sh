#!/usr/bin/env bash
# Provides what `make test` needs besides Go, make and git (all the README
# asks for), so that `make test` works on a fresh machine:
#
#   nginx        the end-to-end tests (test/e2e) run the binary behind a real
#                nginx; they start their own instance on 127.0.0.1 and need
#                nothing on port 80
#   C compiler   go test -race needs cgo: a C compiler and the C library's
#                headers
#   the node     with --node: what the real-node suite (test/node, make
#                test-node, make run NODE=1) runs a single-node cluster with:
#                containerd (and its runc shim and ctr), runc, the CNI
#                plugins (bridge, host-local, loopback), nft, ip,
#                nsenter and unshare; the suite runs them inside network and
#                mount namespaces of its own and needs root
#
# For each missing part:
#   - as root with apt-get (Debian, Ubuntu): installs the Debian packages
#     (nginx; gcc and libc6-dev) without starting nginx's system service: a
#     policy-rc.d that refuses every service start is in place while apt-get
#     runs (one that exists already, as in container images, is kept), and
#     the service of an nginx installed here is disabled afterwards, so it
#     does not start at boot either;
#   - otherwise: says in one line what is missing and how to get it; the
#     nginx tests then skip with that reason (test/e2e/nginxtest) and make
#     test runs go test without -race;
#   - with CI=true (or CI=1) nothing may be skipped: a part still missing is
#     an error (exit 1).
# The machine's network configuration is never touched.
#
# Usage:
#   hack/provision.sh [PACKAGE...]  provide as above; PACKAGEs are further
#                                   Debian packages to install (as root with
#                                   apt-get), e.g. .ci/run's git make
#   hack/provision.sh --check       the same report, never installs anything
#   hack/provision.sh --race-flag   prints -race when go test can use the
#                                   race detector, nothing otherwise (always
#                                   -race with CI=true); no messages
#   hack/provision.sh --node ...    also the node (Debian: containerd, runc,
#                                   containernetworking-plugins, nftables,
#                                   iproute2, util-linux), reported on a line
#                                   of its own; combines with --check
#   hack/provision.sh --node-ready  exit status 0 when the real-node suite can
#                                   run here (root, every part found), 1
#                                   otherwise; no messages
#
# Where it looks (test/e2e/nginxtest looks the same way):
#   nginx       NGINX_BIN if set; else nginx on PATH, then in NGINX_SBIN_PATH
#               (default /usr/sbin:/usr/local/sbin: Debian's nginx is
#               /usr/sbin/nginx, which is not on a normal user's PATH). It
#               must be built with http_auth_request_module (Debian's is).
#   C compiler  `go env CC` (gcc unless CC says otherwise); it must compile
#               and link a program that includes <stdlib.h> and <pthread.h>.
#               CGO_ENABLED=0 in the environment turns -race off as well.
#   the node    commands on PATH, then in NODE_SBIN_PATH (default
#               /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin);
#               the CNI plugins in the first directory of CNI_BIN_DIRS
#               (default /usr/lib/cni:/opt/cni/bin) that has all three.
#               test/utils/realnode looks the same way.
#
# PROVISION_POLICY_RC is the policy-rc.d path (default /usr/sbin/policy-rc.d);
# it is there for test/provision, like NGINX_SBIN_PATH.
set -euo pipefail

SELF="hack/provision.sh"
POLICY_RC="${PROVISION_POLICY_RC:-/usr/sbin/policy-rc.d}"
SBIN_PATH="${NGINX_SBIN_PATH-/usr/sbin:/usr/local/sbin}"

log() { printf '[provision] %s\n' "$*" >&2; }

is_ci() {
	case "${CI:-}" in
	[Tt][Rr][Uu][Ee] | 1) return 0 ;;
	*) return 1 ;;
	esac
}

MODE=provide
NODE=0
while (($# > 0)); do
	case "$1" in
	--check | --race-flag | --node-ready)
		MODE="${1#--}"
		shift
		;;
	--node)
		NODE=1
		shift
		;;
	-h | --help)
		sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	-*)
		log "unknown option $1 (see $SELF --help)"
		exit 2
		;;
	*) break ;;
	esac
done
EXTRA_PACKAGES=("$@")

# find_nginx sets NGINX_PATH and NGINX_VERSION, or NGINX_PROBLEM (what is
# wrong) and NGINX_FOUND (0 when there is no nginx at all, 1 when there is
# one that cannot be used).
find_nginx() {
	NGINX_PATH="" NGINX_VERSION="" NGINX_PROBLEM="" NGINX_FOUND=0
	local cand="" dir dirs
	if [[ -n "${NGINX_BIN:-}" ]]; then
		if [[ ! -f "${NGINX_BIN}" || ! -x "${NGINX_BIN}" ]]; then
			NGINX_PROBLEM="NGINX_BIN=${NGINX_BIN} is not an executable file"
			return 1
		fi
		cand="${NGINX_BIN}"
	else
		IFS=: read -ra dirs <<<"${PATH}:${SBIN_PATH}"
		for dir in "${dirs[@]}"; do
			[[ -n "${dir}" ]] || continue
			if [[ -f "${dir}/nginx" && -x "${dir}/nginx" ]]; then
				cand="${dir}/nginx"
				break
			fi
		done
		if [[ -z "${cand}" ]]; then
			NGINX_PROBLEM="nginx is not installed (not on PATH${SBIN_PATH:+ nor in ${SBIN_PATH}})"
			return 1
		fi
	fi
	NGINX_FOUND=1
	local v
	if ! v="$("${cand}" -V 2>&1)"; then
		NGINX_PROBLEM="${cand} -V failed: $(head -n1 <<<"${v}")"
		return 1
	fi
	if [[ "${v}" != *--with-http_auth_request_module* ]]; then
		NGINX_PROBLEM="${cand} is built without http_auth_request_module"
		return 1
	fi
	NGINX_PATH="${cand}"
	NGINX_VERSION="$(sed -n 's/^nginx version: //p' <<<"${v}" | head -n1)"
}

# find_cc sets CC_NAME, or CC_PROBLEM and CC_INSTALLABLE (1 when installing
# gcc and libc6-dev would help).
find_cc() {
	CC_NAME="" CC_PROBLEM="" CC_INSTALLABLE=1
	if [[ "${CGO_ENABLED:-}" == 0 ]]; then
		CC_PROBLEM="CGO_ENABLED=0 is set (the race detector needs cgo)"
		CC_INSTALLABLE=0
		return 1
	fi
	local cc=""
	if command -v go >/dev/null 2>&1; then
		cc="$(go env CC 2>/dev/null || true)"
	fi
	cc="${cc:-${CC:-gcc}}"
	local -a words
	read -ra words <<<"${cc}"
	if ((${#words[@]} == 0)) || ! command -v "${words[0]}" >/dev/null 2>&1; then
		CC_PROBLEM="no C compiler (${cc} not found)"
		return 1
	fi
	local tmp rc=0 out
	tmp="$(mktemp -d)"
	printf '#include <stdlib.h>\n#include <pthread.h>\nint main(void) { return pthread_self() == 0 ? EXIT_FAILURE : EXIT_SUCCESS; }\n' >"${tmp}/cc.c"
	out="$("${words[@]}" -o "${tmp}/cc" "${tmp}/cc.c" -lpthread 2>&1)" || rc=$?
	rm -rf "${tmp}"
	if ((rc != 0)); then
		CC_PROBLEM="${cc} cannot build a C program ($(head -n1 <<<"${out}"); are the C library headers, libc6-dev, missing?)"
		return 1
	fi
	CC_NAME="${cc}"
}

# The node's commands and the Debian packages they come from.
NODE_COMMANDS=(containerd:containerd containerd-shim-runc-v2:containerd ctr:containerd runc:runc
	nft:nftables ip:iproute2 nsenter:util-linux unshare:util-linux)
CNI_PLUGINS=(bridge host-local loopback)

# find_node sets NODE_FOUND (what it found, for the report), NODE_MISSING
# (what it did not) and NODE_PACKAGES (the Debian packages that have it).
find_node() {
	NODE_FOUND="" NODE_MISSING=() NODE_PACKAGES=()
	local pair cmd pkg dir dirs path found versions=() cni=""
	IFS=: read -ra dirs <<<"${PATH}:${NODE_SBIN_PATH-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}"
	for pair in "${NODE_COMMANDS[@]}"; do
		cmd="${pair%%:*}" pkg="${pair#*:}" found=""
		for dir in "${dirs[@]}"; do
			if [[ -n "${dir}" && -f "${dir}/${cmd}" && -x "${dir}/${cmd}" ]]; then
				found="${dir}/${cmd}"
				break
			fi
		done
		if [[ -z "${found}" ]]; then
			NODE_MISSING+=("${cmd}")
			[[ " ${NODE_PACKAGES[*]} " == *" ${pkg} "* ]] || NODE_PACKAGES+=("${pkg}")
			continue
		fi
		case "${cmd}" in
		containerd) versions+=("containerd $("${found}" --version 2>/dev/null | awk '{print $3}')") ;;
		runc) versions+=("runc $("${found}" --version 2>/dev/null | awk 'NR == 1 {print $3}')") ;;
		esac
	done
	IFS=: read -ra dirs <<<"${CNI_BIN_DIRS-/usr/lib/cni:/opt/cni/bin}"
	for dir in "${dirs[@]}"; do
		[[ -n "${dir}" ]] || continue
		found=1
		for cmd in "${CNI_PLUGINS[@]}"; do
			[[ -x "${dir}/${cmd}" ]] || found=""
		done
		if [[ -n "${found}" ]]; then
			cni="${dir}"
			break
		fi
	done
	if [[ -z "${cni}" ]]; then
		NODE_MISSING+=("the CNI plugins ($(join_words "${CNI_PLUGINS[@]}"))")
		NODE_PACKAGES+=(containernetworking-plugins)
	fi
	NODE_FOUND="$(join_words "${versions[@]}")${cni:+, CNI plugins in ${cni}}"
	((${#NODE_MISSING[@]} == 0))
}

# join_words A B C: "A, B, C".
join_words() {
	local out="" w
	for w in "$@"; do
		out="${out:+${out}, }${w}"
	done
	printf '%s' "${out}"
}

is_root() { [[ "$(id -u)" == 0 ]]; }

if [[ "${MODE}" == race-flag ]]; then
	if is_ci || find_cc; then
		echo "-race"
	fi
	exit 0
fi

if [[ "${MODE}" == node-ready ]]; then
	is_root && find_node
	exit
fi

nginx_ok=1 cc_ok=1 node_ok=1
find_nginx || nginx_ok=0
find_cc || cc_ok=0
if ((NODE)); then
	find_node || node_ok=0
fi

can_apt=0
if is_root && command -v apt-get >/dev/null 2>&1; then
	can_apt=1
fi

# The Debian packages that would supply what is missing: WANTED for nginx
# and the C compiler, NODE_WANTED for the node.
wanted_packages() {
	WANTED=() NODE_WANTED=()
	if ((nginx_ok == 0 && NGINX_FOUND == 0)) && [[ -z "${NGINX_BIN:-}" ]]; then
		WANTED+=(nginx)
	fi
	if ((cc_ok == 0 && CC_INSTALLABLE == 1)); then
		WANTED+=(gcc libc6-dev)
	fi
	if ((NODE && node_ok == 0)); then
		NODE_WANTED+=("${NODE_PACKAGES[@]}")
	fi
}

# disable_service NAME WHY: a package installed here enabled its system
# service for the next boot; nothing here needs it, and nothing here may
# start it. (Without a running systemd, systemctl disable only removes the
# links.)
disable_service() {
	if command -v systemctl >/dev/null 2>&1 && systemctl is-enabled --quiet "$1" 2>/dev/null; then
		if [[ -d /run/systemd/system ]]; then
			systemctl disable --now "$1" >/dev/null 2>&1 || true
		else
			systemctl disable "$1" >/dev/null 2>&1 || true
		fi
		log "disabled $1's system service, which the package enabled ($2)"
	fi
}

# apt_install PACKAGE... installs with apt-get, no service started.
apt_install() {
	local added=0 rc=0
	if [[ ! -e "${POLICY_RC}" ]]; then
		printf '#!/bin/sh\n# %s: no service starts while it installs packages\nexit 101\n' "${SELF}" >"${POLICY_RC}"
		chmod 0755 "${POLICY_RC}"
		added=1
		# Removed however this script ends (Ctrl-C included): left behind, it
		# would keep every later package from starting its service.
		trap 'rm -f "${POLICY_RC}"' EXIT
		trap 'rm -f "${POLICY_RC}"; exit 130' INT TERM HUP
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq || log "apt-get update failed (exit $?); trying with the package lists there are"
	apt-get install -y -qq --no-install-recommends "$@" || rc=$?
	if ((added)); then
		rm -f "${POLICY_RC}"
		trap - EXIT INT TERM HUP
	fi
	return "${rc}"
}

wanted_packages
if [[ "${MODE}" == provide ]] && ((can_apt)) && ((${#WANTED[@]} + ${#NODE_WANTED[@]} + ${#EXTRA_PACKAGES[@]} > 0)); then
	packages=("${WANTED[@]}" "${NODE_WANTED[@]}" "${EXTRA_PACKAGES[@]}")
	services=()
	for svc in nginx containerd; do
		[[ " ${packages[*]} " == *" ${svc} "* ]] && services+=("${svc}")
	done
	note=""
	case "${#services[@]}" in
	1) note="; ${services[0]}'s system service is not started" ;;
	2) note="; the system services of ${services[0]} and ${services[1]} are not started" ;;
	esac
	log "installing Debian packages with apt-get: ${packages[*]} (usually under a minute${note})"
	start=${SECONDS}
	rc=0
	apt_install "${packages[@]}" || rc=$?
	if ((rc == 0)); then
		log "installed in $((SECONDS - start))s"
	else
		log "apt-get install failed (exit ${rc}) after $((SECONDS - start))s"
	fi
	if ((nginx_ok == 0 && NGINX_FOUND == 0)) && [[ " ${packages[*]} " == *" nginx "* ]]; then
		nginx_ok=1
		find_nginx || nginx_ok=0
		((nginx_ok == 0)) || disable_service nginx "the tests start their own nginx"
	fi
	if ((cc_ok == 0)); then
		cc_ok=1
		find_cc || cc_ok=0
	fi
	if ((NODE && node_ok == 0)); then
		node_ok=1
		find_node || node_ok=0
		[[ " ${packages[*]} " != *" containerd "* ]] ||
			disable_service containerd "the real-node suite starts its own, with its own socket and state"
	fi
	wanted_packages
	if ((rc != 0)) && is_ci; then
		log "ERROR: CI=true and apt-get install failed"
		exit 1
	fi
fi

# how_to_get PACKAGE...: how to install them, for a "To get it:" line.
how_to_get() {
	local apt="apt-get install $*"
	[[ " $* " == *" nginx "* ]] && apt+=", without starting nginx's service"
	if is_root; then
		printf 'run %s%s (%s)' "${SELF}" "${NODE_FLAG}" "${apt}"
	else
		printf 'run sudo %s%s (%s), or make test as root' "${SELF}" "${NODE_FLAG}" "${apt}"
	fi
}
NODE_FLAG=""
((NODE == 0)) || NODE_FLAG=" --node"

# report_tools: one line on nginx and the C compiler: what is there, or what
# is missing, what that does to make test and how to get it. Returns 1 when
# CI=true and something is missing.
report_tools() {
	if ((nginx_ok && cc_ok)); then
		log "nginx: ${NGINX_PATH} (${NGINX_VERSION:-version unknown}); C compiler: ${CC_NAME} (go test -race)"
		return 0
	fi
	local missing=() how=() what how_line
	if ((nginx_ok == 0)); then
		if is_ci; then
			missing+=("${NGINX_PROBLEM}, so the nginx end-to-end tests (test/e2e) would be skipped")
		else
			missing+=("${NGINX_PROBLEM}, so the nginx end-to-end tests (test/e2e) skip")
		fi
	fi
	if ((cc_ok == 0)); then
		if is_ci; then
			missing+=("${CC_PROBLEM}, so go test would run without -race")
		else
			missing+=("${CC_PROBLEM}, so go test runs without -race")
		fi
	fi
	what="$(printf '%s; ' "${missing[@]}")"
	what="${what%; }"

	if ((${#WANTED[@]} > 0)); then
		if command -v apt-get >/dev/null 2>&1; then
			how+=("$(NODE_FLAG="" how_to_get "${WANTED[@]}")")
		else
			local pkgs=()
			[[ " ${WANTED[*]} " == *" nginx "* ]] && pkgs+=("nginx (with http_auth_request_module)")
			[[ " ${WANTED[*]} " == *" gcc "* ]] && pkgs+=("gcc and the C library headers")
			how+=("install $(printf '%s and ' "${pkgs[@]}" | sed 's/ and $//') with the system's package manager")
		fi
	fi
	if ((nginx_ok == 0)); then
		if ((NGINX_FOUND == 1)) || [[ -n "${NGINX_BIN:-}" ]]; then
			how+=("set NGINX_BIN to an nginx built with http_auth_request_module")
		else
			how+=("or set NGINX_BIN")
		fi
	fi
	if ((cc_ok == 0 && CC_INSTALLABLE == 0)); then
		how+=("unset CGO_ENABLED")
	fi
	how_line="$(printf '%s, ' "${how[@]}")"
	how_line="${how_line%, }"

	if is_ci; then
		log "ERROR: CI=true, nothing may be skipped: ${what}. To fix: ${how_line}."
		return 1
	fi
	log "missing: ${what}. To get it: ${how_line}."
}

# report_node: one line on the node (--node), as report_tools.
report_node() {
	local what="" how=""
	if ((node_ok)) && is_root; then
		log "node: ${NODE_FOUND} (the real-node suite, test/node, runs)"
		return 0
	fi
	if ((node_ok == 0)); then
		what="no $(join_words "${NODE_MISSING[@]}")"
		if command -v apt-get >/dev/null 2>&1; then
			how="$(how_to_get "${NODE_WANTED[@]}")"
		else
			how="install containerd, runc, the CNI plugins, nftables and iproute2 with the system's package manager"
		fi
	else
		what="not root (it runs containerd, a kubelet and its own network namespace)"
		how="run make test as root, or sudo make test-node"
	fi
	if is_ci; then
		log "ERROR: CI=true, nothing may be skipped: ${what}, so the real-node suite (test/node) would be skipped. To fix: ${how}."
		return 1
	fi
	log "missing: ${what}, so the real-node suite (test/node) skips. To get it: ${how}."
}

status=0
report_tools || status=1
if ((NODE)); then
	report_node || status=1
fi
exit "${status}"
