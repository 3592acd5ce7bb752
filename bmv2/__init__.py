"""dysco.bmv2"""
