"""Grid planning (网格规划): suggest new grid boundaries for a community, measure and check plans."""
