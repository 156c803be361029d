# The two commands of the README: `make demo` (the main job on an embedded default) and `make test`.
# Both run `make setup` first, which is idempotent and quick when already done.
.PHONY: setup demo demo-kitti-layout test
setup:
	@bash scripts/dev/setup.sh

demo: setup
	@bash scripts/demo/demo.sh $(DEMO_ARGS)

demo-kitti-layout: setup
	@bash scripts/demo/demo_kitti_layout.sh

test: setup
	@bash scripts/dev/run_tests.sh
