"""jobcron's tables as Django models: `INSTALLED_APPS += ["jobcron.contrib.django"]`.

`from jobcron.contrib.django.models import Job, File, Insight`. The models are unmanaged: Django's
migrations never create, alter or drop jobcron's tables (`job_cron migrate` owns them). docs/clients.md
shows their use; jobcron/contrib/columns.py says which columns an application may write.
"""
