"""The status page: the daemon's state for people, at ``/``, beside the JSON API it mirrors (issue 16).

The rooms:

* ``routes``: the routes, who may see and who may act (the API's token), and what each page reads;
* ``sparklines``: each SLO's budget line, read from the store in the background and kept drawn;
* ``older``: what the store is too young to say (a chart's older part), read from the metrics source;
* ``layout``: the HTML document, the login form, and how values are spelled;
* ``overview``, ``slo``, ``incidents``: one module per page, plain functions from values to HTML;
* ``charts``: sparklines, budget bars and line charts drawn on the server as SVG;
* ``static/``: the stylesheet, the script that refreshes pages in place, the icon.

The page decides nothing: verdicts, budgets and burn states come from the core (``core.burndown``) and
the numbers are the API's (``records.to_record``).
"""

from budgetguard.web.status.routes import routes
from budgetguard.web.status.sparklines import Sparklines

__all__ = ["Sparklines", "routes"]
