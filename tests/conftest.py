pytest_plugins = ["tests.fixtures.postgres", "tests.cluster.fixtures"]
