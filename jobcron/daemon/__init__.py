"""The daemon: the loop, the running job, the periodic duties, execution inline and in a job process."""
