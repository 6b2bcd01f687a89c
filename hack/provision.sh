#!/usr/bin/env bash
# Provides what `make test` needs besides Go, make and git (all the README
# asks for), so that `make test` works on a fresh machine:
#
#   nginx        the end-to-end tests (test/e2e) run the binary behind a real
#                nginx; they start their own instance on 127.0.0.1 and need
#                nothing on port 80
#   C compiler   go test -race needs cgo: a C compiler and the C library's
#                headers
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
#
# Where it looks (test/e2e/nginxtest looks the same way):
#   nginx       NGINX_BIN if set; else nginx on PATH, then in NGINX_SBIN_PATH
#               (default /usr/sbin:/usr/local/sbin: Debian's nginx is
#               /usr/sbin/nginx, which is not on a normal user's PATH). It
#               must be built with http_auth_request_module (Debian's is).
#   C compiler  `go env CC` (gcc unless CC says otherwise); it must compile
#               and link a program that includes <stdlib.h> and <pthread.h>.
#               CGO_ENABLED=0 in the environment turns -race off as well.
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
case "${1:-}" in
--check | --race-flag)
	MODE="${1#--}"
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
esac
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

if [[ "${MODE}" == race-flag ]]; then
	if is_ci || find_cc; then
		echo "-race"
	fi
	exit 0
fi

nginx_ok=1 cc_ok=1
find_nginx || nginx_ok=0
find_cc || cc_ok=0

can_apt=0
if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
	can_apt=1
fi

# The Debian packages that would supply what is missing.
wanted_packages() {
	WANTED=()
	if ((nginx_ok == 0 && NGINX_FOUND == 0)) && [[ -z "${NGINX_BIN:-}" ]]; then
		WANTED+=(nginx)
	fi
	if ((cc_ok == 0 && CC_INSTALLABLE == 1)); then
		WANTED+=(gcc libc6-dev)
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
if [[ "${MODE}" == provide ]] && ((can_apt)) && ((${#WANTED[@]} + ${#EXTRA_PACKAGES[@]} > 0)); then
	packages=("${WANTED[@]}" "${EXTRA_PACKAGES[@]}")
	note=""
	[[ " ${packages[*]} " == *" nginx "* ]] && note="; nginx's system service is not started"
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
		# The package enables its service for the next boot; the tests do not
		# need it, and nothing here may start it. (Without a running systemd,
		# systemctl disable only removes the links.)
		if ((nginx_ok)) && command -v systemctl >/dev/null 2>&1 &&
			systemctl is-enabled --quiet nginx 2>/dev/null; then
			if [[ -d /run/systemd/system ]]; then
				systemctl disable --now nginx >/dev/null 2>&1 || true
			else
				systemctl disable nginx >/dev/null 2>&1 || true
			fi
			log "disabled nginx's system service, which the package enabled (the tests start their own nginx)"
		fi
	fi
	if ((cc_ok == 0)); then
		cc_ok=1
		find_cc || cc_ok=0
	fi
	wanted_packages
	if ((rc != 0)) && is_ci; then
		log "ERROR: CI=true and apt-get install failed"
		exit 1
	fi
fi

if ((nginx_ok && cc_ok)); then
	log "nginx: ${NGINX_PATH} (${NGINX_VERSION:-version unknown}); C compiler: ${CC_NAME} (go test -race)"
	exit 0
fi

# One line: what is missing, what that does to make test, how to get it.
missing=()
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

how=()
if ((${#WANTED[@]} > 0)); then
	if command -v apt-get >/dev/null 2>&1; then
		apt="apt-get install ${WANTED[*]}"
		[[ " ${WANTED[*]} " == *" nginx "* ]] && apt+=", without starting nginx's service"
		if [[ "$(id -u)" == 0 ]]; then
			how+=("run ${SELF} (${apt})")
		else
			how+=("run sudo ${SELF} (${apt}), or make test as root")
		fi
	else
		pkgs=()
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
	exit 1
fi
log "missing: ${what}. To get it: ${how_line}."
