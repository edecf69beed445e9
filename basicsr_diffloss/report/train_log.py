"""Loss terms and validation metrics against iterations, read from a BasicSR training log."""
import re

TRAINING = re.compile(r'\[epoch:\s*\d+, iter:\s*([\d,]+), lr:\(.*?\)\] \[eta: [^\]]*\] (.*)$')
TERM = re.compile(r'(\w+): (\S+)')
VALIDATION = re.compile(r'INFO: Validation (.+?)(?:, iter (\d+))?\s*$')
METRIC = re.compile(r'^\s+# (\w+): (\S+)')


def parse_train_log(path):
    """``(losses, metrics)``: ``losses[term]`` and ``metrics[(dataset, metric)]`` map iterations to values.

    Validations are placed at the iteration their header names (``Validation <set>, iter <N>``, DiffLossSRModel's
    log), else at the last logged training iteration (plain BasicSR logs). The validation BasicSR runs after
    "End of training" goes to the last logged iteration, unless a validation is already there (then it repeats it).
    """
    losses, metrics = {}, {}
    last_iter, dataset, where, ended = 0, None, None, False
    with open(path, errors='replace') as f:
        for line in f:
            training = TRAINING.search(line)
            if training:
                last_iter, dataset = int(training.group(1).replace(',', '')), None
                for term, value in TERM.findall(training.group(2)):
                    losses.setdefault(term, {})[last_iter] = float(value)
                continue
            ended = ended or 'End of training' in line
            validation = VALIDATION.search(line)
            if validation:
                dataset = validation.group(1)
                where = int(validation.group(2)) if validation.group(2) and not ended else last_iter
                continue
            metric = METRIC.match(line)
            if metric and dataset is not None:
                series = metrics.setdefault((dataset, metric.group(1)), {})
                if not (ended and where in series):
                    series[where] = float(metric.group(2))
            elif line.strip() and not metric:
                dataset = None
    return losses, metrics
