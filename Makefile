# `make demo` and `make test` work on a fresh machine: they create .venv, install the CPU build of
# torch first (override with TORCH_SPEC=...), then the project with its extras.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test clean pdf-tools java

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[dev,spark]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/auditor demo --out audit-demo

# poppler's pdfsig/pdftoppm and qpdf check and render the signed PDF in the tests; on a fresh machine where
# we are root (CI), install them from Debian; elsewhere the tests that need them say why they skip.
pdf-tools:
	@if ! command -v pdfsig >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing poppler-utils and qpdf (pdfsig, pdftoppm) for the PDF signature tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq poppler-utils qpdf >/dev/null; \
	fi

# PySpark (the [spark] extra, --engine spark) runs on a Java 17+ runtime. As root on Debian (CI) it is installed;
# elsewhere the target stops and says what to install.
java:
	@if ! command -v java >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing a Java runtime (openjdk-17-jre-headless) for PySpark"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null; \
		else \
			echo "PySpark needs a Java 17+ runtime: install one (Debian/Ubuntu: sudo apt-get install openjdk-17-jre-headless; macOS: brew install openjdk@17) or set JAVA_HOME" >&2; \
			exit 1; \
		fi; \
	fi

test: $(STAMP) pdf-tools java
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) audit-demo audit-report build *.egg-info
