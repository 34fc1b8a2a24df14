# The two commands: `make demo` runs flakefleet locally end to end;
# `make test` installs what the tests need and runs them all.
.PHONY: demo test bench local-aws-start local-aws-stop

demo:
	bash dev/demo.sh

test:
	bash dev/test.sh

# Measurements for docs/performance.md (not part of the test command).
bench:
	bash dev/bench.sh

local-aws-start:
	bash dev/setup.sh && bash dev/local-aws.sh start

local-aws-stop:
	bash dev/local-aws.sh stop
