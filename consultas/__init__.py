"""Shared core of the consultas service: settings, data model, calendar, numbering, outbox.

Glossary (domain nouns of Directiva 004-2024-EF/45.01 stay Spanish in code, without accents):

- consulta: a citizen's question, from reception to answer (the "ticket").
- requisitos: what a consulta must carry (5.3): name, identity document, entity and RUC when
  representing one, email, phone, the question.
- subsanacion: asking the citizen to complete missing or invalid requisitos.
- organo: a directorate of the MEF; answers técnica consultas on its subjects.
- Red: the network of Red members (RedMember), a titular and an alterno per organo (4.2).
- titular / alterno: the main and the substitute representative of an organo in the Red.
- derivacion: sending a consulta on to another organo (or back to OGDAU).
- OGDAU: Oficina de Gestión Documental y Atención al Usuario, the front office; answers
  administrativa consultas, follows deadlines (6.2) and reports quarterly to OGSU (6.3).
- OGSU: Oficina General de Servicios al Usuario, receives the quarterly report.
- administrativa / tecnica: the two types of consulta (5.2).
- DNI: Documento Nacional de Identidad (8 digits); CE: carné de extranjería; RUC: taxpayer number.
- presented_on: the Lima working date a consulta counts as presented (5.1); due_on: its deadline.
"""
