"""``artflow_step``: the job format (``job``), input planning (``plan``) and the
fixture object (``fixture``). The step's process imports ``job``, so this
package imports nothing itself."""
