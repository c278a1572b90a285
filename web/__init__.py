"""The public web face: the Anexo N° 1 form, the status page and the public API (``/api/v1``).

An edge like intake and the bot: it admits consultas through the shared admission
(``routing.admission``) as channel ``formulario`` and never imports another channel's package.
"""
