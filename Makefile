# The two set-up commands from the README, and the pieces they are made of.
.PHONY: demo test lint audit dev-cluster kind-up crd docs

demo:            ## run a real sync between two sandbox apps on this machine
	@scripts/bootstrap
	uv run datasync demo

test:            ## the whole test suite, with everything it needs (what CI runs)
	@scripts/bootstrap --system --cluster
	uv run pytest

lint:            ## ruff and mypy (strict on the core)
	@scripts/bootstrap
	uv run ruff check .
	uv run ruff format --check .
	uv run mypy

audit:           ## known vulnerabilities in the locked dependencies
	@scripts/bootstrap
	uv export --frozen --no-dev --no-emit-project --format requirements-txt > .venv/requirements-audit.txt
	uv run pip-audit --strict --disable-pip -r .venv/requirements-audit.txt

dev-cluster:     ## a real control plane for manual experiments; prints KUBECONFIG
	@scripts/bootstrap --system --cluster
	uv run tests/cluster/up

crd docs:        ## regenerate the CRD and the API reference from the models
	uv run datasync crd --write
	uv run datasync docs --write

kind-up:         ## for users with Docker: a kind cluster with the chart and the sandbox example
	bash hack/kind-up.sh
