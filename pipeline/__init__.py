"""cxr-fishr: does a chest X-ray classifier look at the lungs or at shortcuts?"""

__version__ = "0.1.0"
