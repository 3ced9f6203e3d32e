"""The calculator a model calls in the middle of a rationale.

GSM8K marks every arithmetic step of a rationale, e.g. "48/2 = <<48/2=24>>24".
While sampling, the model writes the expression and "=", and the calculator
writes the result (paper: "we also use an external calculator", generate.py's
tool_fn). The paper's code hands whatever the model wrote to Python's `eval`;
here we parse with `ast` and compute only plain arithmetic on numbers, within
bounds that keep hostile input ("9**9**9", "__import__('os')") harmless and fast.

calculate("48/2") -> "24"     calculate("12/60") -> "0.2"     calculate("1/0") -> None
"""

import ast
import re
from fractions import Fraction

# Bounds. GSM8K's longest annotation is well under 100 characters and its
# largest number has 11 digits, so none of these ever rejects a real step.
MAX_EXPRESSION_LENGTH = 200
MAX_DIGITS_PER_NUMBER = 15
MAX_MAGNITUDE = 10**15  # checked on every literal and every intermediate result
MAX_EXPONENT = 10
MAX_NESTING = 20  # parentheses, and the depth of the parsed expression tree

_ALLOWED_CHARACTERS = re.compile(r"[0-9.+\-*/() ]*")
# GSM8K text writes "4 x 5" and "4 × 5"; only an x between two numbers means times.
_SPELLED_TIMES = re.compile(r"(?<=[\d).])\s*[xX]\s*(?=[\d(.])")

_OPERATIONS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,  # Fraction / Fraction is exact; b == 0 raises ZeroDivisionError
}


class _Rejected(Exception):
    """Raised inside the evaluator for anything that is not bounded arithmetic."""


def calculate(expression):
    """The result of an arithmetic expression as GSM8K writes it, or None if we won't compute it."""
    value = evaluate(expression)
    return None if value is None else format_number(value)


def format_number(value):
    """Format like the paper's tool_fn: an integer when within 1e-4 of one, else 2 decimals.

    str(round(x, 2)) writes 2.5 as "2.5", not "2.50"; GSM8K's annotations agree
    (228 one-decimal results written "2.5" against 105 written "2.50").
    """
    nearest_integer = round(value)
    if abs(value - nearest_integer) < Fraction(1, 10_000):
        return str(nearest_integer)
    rounded = round(float(value), 2)
    if rounded == 0:
        rounded = 0.0  # never write "-0.0"
    return str(rounded)


def evaluate(expression):
    """The exact value (a Fraction) of an arithmetic expression, or None."""
    # Cheap checks on the raw text first, so huge or deeply nested input is
    # refused before the parser (which could recurse deeply) ever sees it.
    if not isinstance(expression, str) or len(expression) > MAX_EXPRESSION_LENGTH:
        return None
    expression = expression.replace("×", "*").replace("÷", "/").replace("−", "-")
    expression = _SPELLED_TIMES.sub("*", expression).strip()
    if not expression or not _ALLOWED_CHARACTERS.fullmatch(expression):
        return None
    if _parenthesis_depth(expression) > MAX_NESTING:
        return None
    if any(len(digits) > MAX_DIGITS_PER_NUMBER for digits in re.findall(r"\d+", expression)):
        return None
    try:
        tree = ast.parse(expression, mode="eval")  # parse only; the tree is walked below, never run
        return _value(tree.body, expression, depth=0)
    except (SyntaxError, ValueError, ZeroDivisionError, RecursionError, MemoryError, _Rejected):
        return None


def _parenthesis_depth(text):
    depth = deepest = 0
    for char in text:
        if char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth -= 1
    return deepest


def _checked(value):
    if abs(value) > MAX_MAGNITUDE:
        raise _Rejected("number too large")
    return value


def _value(node, source, depth):
    """Walk the parsed tree; numbers and + - * / ** and unary signs are all we accept."""
    if depth > 2 * MAX_NESTING:  # e.g. "- - - - ... 1"
        raise _Rejected("expression too deep")

    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        # Read the literal's own text: Fraction("0.2") is exactly 1/5, Fraction(0.2) is not.
        return _checked(Fraction(ast.get_source_segment(source, node)))

    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        operand = _value(node.operand, source, depth + 1)
        return -operand if isinstance(node.op, ast.USub) else operand

    if isinstance(node, ast.BinOp):
        left = _value(node.left, source, depth + 1)
        right = _value(node.right, source, depth + 1)
        if isinstance(node.op, ast.Pow):
            # Only small whole exponents: 9**9**9 stops here at 9**387420489.
            if right.denominator != 1 or abs(right) > MAX_EXPONENT:
                raise _Rejected("exponent not a small integer")
            return _checked(left ** int(right))
        operation = _OPERATIONS.get(type(node.op))
        if operation is None:
            raise _Rejected(f"operator {type(node.op).__name__} not allowed")
        return _checked(operation(left, right))

    raise _Rejected(f"{type(node).__name__} not allowed")
